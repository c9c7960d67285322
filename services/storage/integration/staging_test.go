package integration

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// stagingOf reads a mailbox's record straight from etcd and returns its
// staging (nil when no bulk copy holds it).
func stagingOf(ctx context.Context, cli *clientv3.Client, account, mailboxID string) *storagev1.Staging {
	resp, err := cli.Get(ctx, keyPrefix+"accounts/"+account+"/mailboxes/"+mailboxID)
	if err != nil || len(resp.Kvs) == 0 {
		return nil
	}
	mb := &storagev1.Mailbox{}
	if protoUnmarshal(resp.Kvs[0].Value, mb) != nil {
		return nil
	}
	return mb.Staging
}

// waitStaging waits until a bulk copy holds the mailbox.
func waitStaging(t *testing.T, cli *clientv3.Client, account, mailboxID string) {
	t.Helper()
	ctx := ctxT(t)
	for stagingOf(ctx, cli, account, mailboxID) == nil {
		if ctx.Err() != nil {
			t.Fatal("no bulk copy started")
		}
		time.Sleep(time.Millisecond)
	}
}

// A COPY too large for one transaction is one change for everyone else:
// listings taken while it runs see none of the copies or all of them, and a
// watcher gets every copy in one revision (RFC 9051 6.4.7; RFC 7162's
// MODSEQ rules: one modseq above every earlier one).
func TestBulkCopyIsAllOrNothingForOthers(t *testing.T) {
	const n = 1500
	c := newCluster(t, options{driver: "fs"})
	r := c.replicas[0]
	ctx := ctxT(t)
	acc := setupAccount(t, r, "stage@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	fillMailbox(ctx, t, r, acc.Id, inbox, n, 16, 8<<10)
	dest := createMailbox(t, r, acc.Id, "Projects")
	destBefore, _ := listAll(t, r, acc.Id, dest)

	watch, err := r.Watch.Watch(ctx, &storagev1.WatchRequest{AccountId: acc.Id})
	if err != nil {
		t.Fatal(err)
	}
	type added struct {
		rev     int64
		modseq  uint64
		partial bool
	}
	addsCh := make(chan []added, 1)
	go func() {
		var adds []added
		for len(adds) < n {
			resp, err := watch.Recv()
			if err != nil {
				break
			}
			for _, ch := range resp.Changes {
				if ch.MailboxId == dest && ch.Kind == storagev1.Change_KIND_MESSAGE_ADDED {
					adds = append(adds, added{resp.Revision, ch.Modseq, resp.Partial})
				}
			}
		}
		addsCh <- adds
	}()

	// Readers poll the destination while the copy runs.
	stop := make(chan struct{})
	var seen sync.Map
	var readers sync.WaitGroup
	for i := 0; i < 2; i++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mb, msgs := listAll(t, r, acc.Id, dest)
				seen.Store(len(msgs), mb.Messages)
			}
		}()
	}
	copied, err := r.Messages.CopyMessages(ctx, &storagev1.CopyMessagesRequest{AccountId: acc.Id, MailboxId: inbox, Uids: all, DestMailboxId: dest})
	close(stop)
	readers.Wait()
	if err != nil || len(copied.DestUids) != n {
		t.Fatalf("COPY: %d copied, %v", len(copied.GetDestUids()), err)
	}
	seen.Range(func(k, v any) bool {
		if k.(int) != 0 && k.(int) != n || int(v.(uint32)) != k.(int) {
			t.Errorf("a reader saw %d of the %d copies listed (MESSAGES %d)", k, n, v)
		}
		return true
	})
	if stagingOf(ctx, c.etcdClient(), acc.Id, dest) != nil {
		t.Fatal("the staging outlived the copy")
	}

	var adds []added
	select {
	case adds = <-addsCh:
	case <-time.After(30 * time.Second):
		t.Fatal("the watcher did not get the copies")
	}
	if len(adds) != n {
		t.Fatalf("watcher saw %d copies added, want %d", len(adds), n)
	}
	for _, a := range adds {
		if a.rev != adds[0].rev || a.modseq != adds[0].modseq || a.modseq <= destBefore.HighestModseq {
			t.Fatalf("copies added at revision %d modseq %d and at revision %d modseq %d (HIGHESTMODSEQ before %d)",
				adds[0].rev, adds[0].modseq, a.rev, a.modseq, destBefore.HighestModseq)
		}
	}
	if adds[len(adds)-1].partial {
		t.Fatal("the last response of the revision says partial")
	}
	mb, msgs := listAll(t, r, acc.Id, dest)
	if len(msgs) != n || mb.HighestModseq != adds[0].modseq {
		t.Fatalf("Projects lists %d (HIGHESTMODSEQ %d, copies' modseq %d)", len(msgs), mb.HighestModseq, adds[0].modseq)
	}
	checkAscending(t, "Projects", uidsOf(msgs))
}

// A COPY whose quota room vanishes while it is staged (an admin lowers the
// quota) fails as a whole: the destination lists nothing, its staged
// entries and their body references are gone, usage is unchanged; and a
// writer of the destination waited for it instead of slipping a UID in
// between.
func TestBulkCopyFailingAtPublishLeavesNothing(t *testing.T) {
	const n = 1500
	c := newCluster(t, options{driver: "fs"})
	r := c.replicas[0]
	ctx := ctxT(t)
	acc := setupAccount(t, r, "publish@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	fillMailbox(ctx, t, r, acc.Id, inbox, n, 16, 8<<10)
	dest := createMailbox(t, r, acc.Id, "Projects")
	before := getQuota(t, r, acc.Id)

	done := make(chan error, 1)
	go func() {
		_, err := r.Messages.CopyMessages(ctx, &storagev1.CopyMessagesRequest{AccountId: acc.Id, MailboxId: inbox, Uids: all, DestMailboxId: dest})
		done <- err
	}()
	cli := c.etcdClient()
	waitStaging(t, cli, acc.Id, dest)
	setQuota(t, r, acc.Id, 0, before.UsedMessages+1)
	// An APPEND to the destination meanwhile waits for the copy.
	appended, err := appendMsg(ctx, r, acc.Id, dest, message(1, 500))
	if err != nil {
		t.Fatalf("APPEND behind the copy: %v", err)
	}
	if err := <-done; storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_OVER_QUOTA {
		t.Fatalf("COPY: %v, want OVER_QUOTA", err)
	}
	_, msgs := listAll(t, r, acc.Id, dest)
	if len(msgs) != 1 || msgs[0].Uid != appended.Uid {
		t.Fatalf("Projects lists %d entries after the failed COPY, want only the APPEND", len(msgs))
	}
	keys, err := cli.Get(ctx, keyPrefix+"accounts/"+acc.Id+"/messages/"+dest+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || keys.Count != 1 {
		t.Fatalf("%v entries left under Projects (%v), want 1", keys.Count, err)
	}
	refs, err := cli.Get(ctx, keyPrefix+"bodies/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || refs.Count != n+1 {
		t.Fatalf("%d body reference records, want %d", refs.Count, n+1)
	}
	if q := getQuota(t, r, acc.Id); q.UsedMessages != before.UsedMessages+1 {
		t.Fatalf("usage %d messages, want %d", q.UsedMessages, before.UsedMessages+1)
	}
}

// A bulk COPY whose storage replica dies mid-way leaves a staging behind;
// once it expires, the next writer of the mailbox has it removed and goes
// on: nothing staged ever shows, nothing leaks.
func TestAbandonedBulkCopyIsRemoved(t *testing.T) {
	const n = 3000
	c := newCluster(t, options{driver: "fs", replicas: 2, extraArgs: []string{"--bulk-staging-ttl", "3s"}})
	r, other := c.replicas[0], c.replicas[1]
	ctx := ctxT(t)
	acc := setupAccount(t, r, "abandon@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	fillMailbox(ctx, t, r, acc.Id, inbox, n, 16, 8<<10)
	dest := createMailbox(t, r, acc.Id, "Projects")

	go r.Messages.CopyMessages(ctx, &storagev1.CopyMessagesRequest{AccountId: acc.Id, MailboxId: inbox, Uids: all, DestMailboxId: dest})
	cli := c.etcdClient()
	waitStaging(t, cli, acc.Id, dest)
	time.Sleep(50 * time.Millisecond) // a few steps staged
	r.stop(syscall.SIGKILL)
	st := stagingOf(ctx, cli, acc.Id, dest)
	if st == nil {
		t.Fatal("the copy finished before the kill: stage more messages")
	}
	appended, err := appendMsg(ctx, other, acc.Id, dest, message(2, 500))
	if err != nil {
		t.Fatalf("APPEND after the abandoned copy expired: %v", err)
	}
	mb, msgs := listAll(t, other, acc.Id, dest)
	if len(msgs) != 1 || mb.Messages != 1 || msgs[0].Uid != appended.Uid {
		t.Fatalf("Projects lists %d entries (MESSAGES %d), want only the APPEND", len(msgs), mb.Messages)
	}
	// The reaper ran before the APPEND could: no staged entry is left.
	keys, err := cli.Get(ctx, keyPrefix+"accounts/"+acc.Id+"/messages/"+dest+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || keys.Count != 1 {
		t.Fatalf("%d entries under Projects, want 1 (%v)", keys.Count, err)
	}
	refs, err := cli.Get(ctx, keyPrefix+"bodies/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || refs.Count != n+1 {
		t.Fatalf("%d body reference records, want %d", refs.Count, n+1)
	}
}

// A MOVE too large for one transaction: every message ends in exactly one
// mailbox, with its flags, and usage is unchanged.
func TestBulkMove(t *testing.T) {
	const n = 1500
	c := newCluster(t, options{driver: "fs"})
	r := c.replicas[0]
	ctx := ctxT(t)
	acc := setupAccount(t, r, "move@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	fillMailbox(ctx, t, r, acc.Id, inbox, n, 16, 8<<10)
	dest := createMailbox(t, r, acc.Id, "Projects")
	before := getQuota(t, r, acc.Id)
	_, srcMsgs := listAll(t, r, acc.Id, inbox)
	moved, err := r.Messages.MoveMessages(ctx, &storagev1.MoveMessagesRequest{AccountId: acc.Id, MailboxId: inbox, Uids: all, DestMailboxId: dest})
	if err != nil || len(moved.DestUids) != n || len(moved.SourceUids) != n {
		t.Fatalf("MOVE: %v %v", moved, err)
	}
	mb, msgs := listAll(t, r, acc.Id, inbox)
	if len(msgs) != 0 || mb.Messages != 0 {
		t.Fatalf("INBOX keeps %d after MOVE", len(msgs))
	}
	_, dst := listAll(t, r, acc.Id, dest)
	if len(dst) != n {
		t.Fatalf("Projects has %d after MOVE", len(dst))
	}
	for i := range dst {
		if dst[i].Uid != moved.DestUids[i] || dst[i].BodyKey != srcMsgs[i].BodyKey || !sameStrings(dst[i].Flags, srcMsgs[i].Flags) {
			t.Fatalf("moved message %d differs: %v vs %v", i, dst[i], srcMsgs[i])
		}
	}
	if q := getQuota(t, r, acc.Id); q.UsedMessages != before.UsedMessages || q.UsedBytes != before.UsedBytes {
		t.Fatalf("usage %d/%d after MOVE, was %d/%d", q.UsedMessages, q.UsedBytes, before.UsedMessages, before.UsedBytes)
	}
	marks, err := c.etcdClient().Get(ctx, keyPrefix+"cleanup/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || marks.Count != 0 {
		t.Fatalf("%d cleanup marks left after the MOVE", marks.Count)
	}
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
