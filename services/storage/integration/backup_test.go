package integration

import (
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// The backup procedure of the README, as an operator runs it, while mail
// flows: mailctl backup of a live cell, mailctl restore into a new empty
// cell (its own etcd and bucket), mailctl fsck there. Every message whose
// delivery was acknowledged before the backup started must be in the
// restored cell, byte for byte, and the restored cell must be consistent.
//
// The sweep grace is short and a writer keeps expunging, so bodies the
// backup's revision references are freed and due for deletion while it
// copies them: without the backup's hold on the sweeper the restored cell
// would miss bodies (fsck: body_missing).
func TestBackupUnderLoadRestoresEveryAcknowledgedMessage(t *testing.T) {
	src := newCluster(t, options{replicas: 2, sweepGrace: 300 * time.Millisecond})
	ctx := ctxT(t)
	users := []string{"ann@backup.test", "bob@backup.test", "cat@backup.test"}
	var ids []string
	for _, u := range users {
		ids = append(ids, setupAccount(t, src.replicas[0], u, 0, 0).Id)
	}
	trash := mailboxID(t, src.replicas[0], ids[0], "Trash")

	// The load: deliveries to every user through both replicas, and on
	// the side appends to ann's Trash that are expunged at once.
	type acked struct {
		at  time.Time
		sum [32]byte
	}
	var (
		mu       sync.Mutex
		acks     []acked
		stop     atomic.Bool
		wg       sync.WaitGroup
		seq      atomic.Int64
		failures atomic.Int64
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := src.replicas[w%2]
			for !stop.Load() {
				n := int(seq.Add(1))
				body := message(n, 1500+n%7*1000)
				if _, err := deliver(ctx, r, []string{users[n%3]}, body); err != nil {
					failures.Add(1)
					continue
				}
				mu.Lock()
				acks = append(acks, acked{at: time.Now(), sum: sha256.Sum256(body)})
				mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() {
		// Keeps about 30 messages in ann's Trash, expunging the oldest
		// as it adds one: the backup's revision references some that are
		// gone (and swept, but for the hold) before it copies them.
		defer wg.Done()
		r := src.replicas[1]
		var backlog []uint32
		for i := 0; !stop.Load(); i++ {
			resp, err := appendMsg(ctx, r, ids[0], trash, message(1_000_000+i, 3000))
			if err != nil {
				continue
			}
			backlog = append(backlog, resp.Uid)
			if len(backlog) <= 30 {
				continue
			}
			uid := backlog[0]
			backlog = backlog[1:]
			r.Messages.ExpungeMessages(ctx, &storagev1.ExpungeMessagesRequest{AccountId: ids[0], MailboxId: trash,
				Uids: &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: uid, Last: uid}}}, IgnoreDeletedFlag: true})
		}
	}()
	defer func() { stop.Store(true); wg.Wait() }()

	time.Sleep(3 * time.Second)
	dir := filepath.Join(t.TempDir(), "backup")
	started := time.Now()
	out, err := mailctl(t, src.replicas[0], "", "backup", dir)
	if err != nil {
		t.Fatalf("mailctl backup: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(out))
	// The source is consistent under the same load.
	if out, err := mailctl(t, src.replicas[1], "", "fsck"); err != nil {
		t.Fatalf("mailctl fsck of the live source: %v\n%s", err, out)
	}
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	var before []acked
	for _, a := range acks {
		if a.at.Before(started) {
			before = append(before, a)
		}
	}
	mu.Unlock()
	if len(before) < 50 || len(acks) == len(before) {
		t.Fatalf("%d deliveries before the backup and %d during it: the test needs both", len(before), len(acks)-len(before))
	}
	if n := failures.Load(); n > 0 {
		t.Errorf("%d deliveries failed under the load", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		t.Fatalf("no manifest: %v", err)
	}

	// A new cell: its own etcd and bucket, nothing in it.
	dst := newCluster(t, options{})
	r := dst.replicas[0]
	out, err = mailctl(t, r, "", "restore", dir)
	if err != nil {
		t.Fatalf("mailctl restore: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(out))
	out, err = mailctl(t, r, "", "fsck")
	if err != nil || !strings.Contains(out, " 0 findings") {
		t.Fatalf("mailctl fsck of the restored cell: %v\n%s", err, out)
	}
	// A second restore is refused: the cell is no longer empty.
	if out, err := mailctl(t, r, "", "restore", dir); err == nil || !strings.Contains(out, "empty cell") {
		t.Fatalf("a restore over a cell with accounts: %v\n%s", err, out)
	}

	// Every acknowledged message is there, byte for byte, and the users
	// log in with their passwords.
	have := map[[32]byte]bool{}
	for i, u := range users {
		if _, err := r.Accounts.Authenticate(ctx, &storagev1.AuthenticateRequest{Username: u, Password: "pw-" + u}); err != nil {
			t.Fatalf("%s cannot log in to the restored cell: %v", u, err)
		}
		inbox := mailboxID(t, r, ids[i], "INBOX")
		mb, msgs := listAll(t, r, ids[i], inbox)
		if int(mb.Messages) != len(msgs) {
			t.Errorf("%s: INBOX says %d messages, lists %d", u, mb.Messages, len(msgs))
		}
		for _, m := range msgs {
			body, err := readBody(ctx, r, ids[i], inbox, m.Uid, 0, 0)
			if err != nil {
				t.Fatalf("%s UID %d: %v", u, m.Uid, err)
			}
			have[sha256.Sum256(body)] = true
		}
	}
	lost := 0
	for _, a := range before {
		if !have[a.sum] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d messages acknowledged before the backup are missing from the restored cell", lost, len(before))
	}
	t.Logf("%d messages acknowledged before the backup, %d during it; all %d present after the restore",
		len(before), len(acks)-len(before), len(before))

	// Mail flows in the restored cell: new UIDs follow the restored ones.
	if _, err := deliver(ctx, r, []string{users[0]}, message(9_999_999, 500)); err != nil {
		t.Fatalf("delivery to the restored cell: %v", err)
	}
}

// While a backup streams, the sweeper deletes no body, even one whose last
// reference went away after the backup's revision and whose grace passed:
// the backup still has to copy it.
func TestBackupHoldsTheSweeper(t *testing.T) {
	c := newCluster(t, options{sweepGrace: 300 * time.Millisecond})
	r := c.replicas[0]
	ctx := ctxT(t)
	acct := setupAccount(t, r, "ann@hold.test", 0, 0)
	inbox := mailboxID(t, r, acct.Id, "INBOX")
	// Large enough that the stream stalls on gRPC flow control until
	// the test reads on.
	for i := range 20 {
		if _, err := appendMsg(ctx, r, acct.Id, inbox, message(i, 300_000)); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := storagev1.NewMaintenanceServiceClient(r.conn).Backup(ctx, &storagev1.BackupRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // the backup's revision is taken
		t.Fatal(err)
	}
	if _, err := r.Messages.ExpungeMessages(ctx, &storagev1.ExpungeMessagesRequest{AccountId: acct.Id, MailboxId: inbox,
		Uids: &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: 1, Last: 20}}}, IgnoreDeletedFlag: true}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // many sweeps, well past the grace
	if n := c.objectCount(); n != 20 {
		t.Fatalf("%d of 20 bodies left while the backup runs", n)
	}
	bodies := 0
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if o := resp.GetObject(); o != nil && !strings.HasPrefix(o.Key, "summaries/") {
			bodies++
		}
	}
	if bodies != 20 {
		t.Fatalf("the backup copied %d of the 20 bodies its revision references", bodies)
	}
	// The hold ends with the backup: the sweeper deletes them now.
	deadline := time.Now().Add(20 * time.Second)
	for c.objectCount() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bodies still stored after the backup ended", c.objectCount())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
