package integration

import (
	"context"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// watchCollector reads a Watch stream in the background.
type watchCollector struct {
	batches chan *storagev1.WatchResponse
	cancel  context.CancelFunc
}

func startWatch(t *testing.T, r *replica, account string, after int64) *watchCollector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := r.Watch.Watch(ctx, &storagev1.WatchRequest{AccountId: account, AfterRevision: after})
	if err != nil {
		t.Fatal(err)
	}
	w := &watchCollector{batches: make(chan *storagev1.WatchResponse, 1000), cancel: cancel}
	go func() {
		defer close(w.batches)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			w.batches <- resp
		}
	}()
	t.Cleanup(cancel)
	return w
}

// collect reads changes until want of them (of the given kinds) arrived.
func (w *watchCollector) collect(t *testing.T, want int, kinds ...storagev1.Change_Kind) ([]*storagev1.Change, int64) {
	t.Helper()
	var got []*storagev1.Change
	var rev int64
	timeout := time.After(20 * time.Second)
	for len(got) < want {
		select {
		case b, ok := <-w.batches:
			if !ok {
				t.Fatalf("watch ended after %d of %d changes", len(got), want)
			}
			if b.Revision <= rev {
				t.Fatalf("revision %d after %d", b.Revision, rev)
			}
			rev = b.Revision
			for _, c := range b.Changes {
				for _, k := range kinds {
					if c.Kind == k {
						got = append(got, c)
					}
				}
			}
		case <-timeout:
			t.Fatalf("got %d of %d changes", len(got), want)
		}
	}
	return got, rev
}

// A watcher on replica B sees every append, flag change and expunge made
// through replica A, in modseq order, and resumes without gaps.
func TestWatchAcrossReplicas(t *testing.T) {
	c := newCluster(t, options{replicas: 2})
	a, b := c.replicas[0], c.replicas[1]
	acc := setupAccount(t, a, "watched@example.test", 0, 0)
	inbox := mailboxID(t, a, acc.Id, "INBOX")
	ctx := ctxT(t)

	w := startWatch(t, b, acc.Id, 0)
	time.Sleep(200 * time.Millisecond) // let the watch register before writing
	for i := 0; i < 10; i++ {
		if _, err := appendMsg(ctx, a, acc.Id, inbox, message(i, 300)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Messages.StoreFlags(ctx, &storagev1.StoreFlagsRequest{AccountId: acc.Id, MailboxId: inbox,
		Uids: &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: 2, Last: 3}}}, Op: storagev1.StoreFlagsRequest_OP_ADD, Flags: []string{`\Deleted`}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Messages.ExpungeMessages(ctx, &storagev1.ExpungeMessagesRequest{AccountId: acc.Id, MailboxId: inbox}); err != nil {
		t.Fatal(err)
	}
	msgKinds := []storagev1.Change_Kind{storagev1.Change_KIND_MESSAGE_ADDED, storagev1.Change_KIND_FLAGS_CHANGED, storagev1.Change_KIND_MESSAGE_EXPUNGED}
	changes, lastRev := w.collect(t, 14, msgKinds...)
	var lastModseq uint64
	for i, ch := range changes {
		if ch.Modseq < lastModseq || ch.Modseq == 0 {
			t.Fatalf("change %d (%v uid %d) has modseq %d after %d", i, ch.Kind, ch.Uid, ch.Modseq, lastModseq)
		}
		lastModseq = ch.Modseq
		switch {
		case i < 10:
			if ch.Kind != storagev1.Change_KIND_MESSAGE_ADDED || ch.Uid != uint32(i+1) {
				t.Fatalf("change %d = %v uid %d, want add of uid %d", i, ch.Kind, ch.Uid, i+1)
			}
		case i < 12:
			if ch.Kind != storagev1.Change_KIND_FLAGS_CHANGED || len(ch.Flags) != 1 || ch.Flags[0] != `\Deleted` {
				t.Fatalf("change %d = %v %v, want \\Deleted set", i, ch.Kind, ch.Flags)
			}
		default:
			if ch.Kind != storagev1.Change_KIND_MESSAGE_EXPUNGED || ch.Uid != uint32(i-10) {
				t.Fatalf("change %d = %v uid %d, want expunge of uid %d", i, ch.Kind, ch.Uid, i-10)
			}
		}
	}
	w.cancel()

	// Changes made while nobody watches arrive on resume from the last revision.
	for i := 10; i < 15; i++ {
		if _, err := appendMsg(ctx, a, acc.Id, inbox, message(i, 300)); err != nil {
			t.Fatal(err)
		}
	}
	w2 := startWatch(t, b, acc.Id, lastRev)
	resumed, _ := w2.collect(t, 5, msgKinds...)
	for i, ch := range resumed {
		if ch.Kind != storagev1.Change_KIND_MESSAGE_ADDED || ch.Uid != uint32(11+i) {
			t.Fatalf("resumed change %d = %v uid %d, want add of uid %d (no gap, no repeat)", i, ch.Kind, ch.Uid, 11+i)
		}
	}
}

// A watcher resuming from a compacted revision is told to resynchronise
// instead of silently missing changes.
func TestWatchAfterCompactionAsksForResync(t *testing.T) {
	c := newCluster(t, options{})
	r := c.replicas[0]
	acc := setupAccount(t, r, "compact@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	ctx := ctxT(t)
	if _, err := appendMsg(ctx, r, acc.Id, inbox, message(1, 100)); err != nil {
		t.Fatal(err)
	}
	cli := c.etcdClient()
	head, err := cli.Get(ctx, "probe")
	if err != nil {
		t.Fatal(err)
	}
	startRev := head.Header.Revision
	for i := 0; i < 3; i++ {
		if _, err := appendMsg(ctx, r, acc.Id, inbox, message(i+2, 100)); err != nil {
			t.Fatal(err)
		}
	}
	now, _ := cli.Get(ctx, "probe")
	if _, err := cli.Compact(ctx, now.Header.Revision); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, r, acc.Id, startRev)
	select {
	case b := <-w.batches:
		if !b.ResyncRequired {
			t.Fatalf("first batch after compaction %+v, want resync_required", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer after compaction")
	}
	// After the resync the stream goes on with new changes.
	if _, err := appendMsg(ctx, r, acc.Id, inbox, message(9, 100)); err != nil {
		t.Fatal(err)
	}
	got, _ := w.collect(t, 1, storagev1.Change_KIND_MESSAGE_ADDED)
	if got[0].Uid != 5 {
		t.Fatalf("after resync got uid %d, want 5", got[0].Uid)
	}
}

// A replica that is told to stop ends its Watch streams at once with
// UNAVAILABLE (watchers resume on another replica) instead of holding its
// shutdown until the grace period runs out.
func TestWatchEndsPromptlyOnShutdown(t *testing.T) {
	c := newCluster(t, options{})
	r := c.replicas[0]
	acc := setupAccount(t, r, "draining@example.test", 0, 0)
	stream, err := r.Watch.Watch(context.Background(), &storagev1.WatchRequest{AccountId: acc.Id})
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // the watch is registered
	stopped := make(chan struct{})
	go func() { r.stop(syscall.SIGTERM); close(stopped) }()
	select {
	case err := <-ended:
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("watch ended with %v, want UNAVAILABLE", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch outlived the replica's shutdown by 10s")
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the replica did not exit within 10s of SIGTERM with a watcher connected")
	}
}
