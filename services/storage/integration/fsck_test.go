package integration

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// check runs the consistency check over the API and returns its findings
// by kind, and its summary.
func check(t *testing.T, r *replica, repair bool) (map[storagev1.Finding_Kind][]*storagev1.Finding, *storagev1.CheckSummary) {
	t.Helper()
	stream, err := storagev1.NewMaintenanceServiceClient(r.conn).Check(ctxT(t), &storagev1.CheckRequest{Repair: repair})
	if err != nil {
		t.Fatal(err)
	}
	found := map[storagev1.Finding_Kind][]*storagev1.Finding{}
	var sum *storagev1.CheckSummary
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("check: %v", err)
		}
		if f := resp.GetFinding(); f != nil {
			found[f.Kind] = append(found[f.Kind], f)
		}
		if s := resp.GetSummary(); s != nil {
			sum = s
		}
	}
	if sum == nil {
		t.Fatal("check ended without a summary")
	}
	return found, sum
}

// Every kind of damage mailctl fsck is for, made by hand in etcd and the
// body store: the check names each one, --repair fixes all but the lost
// body, and a second check finds only that.
func TestFsckFindsAndRepairsDamage(t *testing.T) {
	// fs driver: the test ages an orphan's file past the sweep grace. The
	// replica's own orphan scan must not remove it first.
	c := newCluster(t, options{driver: "fs", sweepGrace: time.Hour, extraArgs: []string{"--orphan-scan-interval", "1h"}})
	r := c.replicas[0]
	ctx := ctxT(t)
	cli := c.etcdClient()
	const prefix = "/mailfleet/v1/"
	ann := setupAccount(t, r, "ann@fsck.test", 0, 0)
	bob := setupAccount(t, r, "bob@fsck.test", 0, 0)
	for i := range 6 {
		if _, err := deliver(ctx, r, []string{"ann@fsck.test", "bob@fsck.test"}, message(i, 2000)); err != nil {
			t.Fatal(err)
		}
	}
	annInbox := mailboxID(t, r, ann.Id, "INBOX")
	_, msgs := listAll(t, r, ann.Id, annInbox)

	if found, sum := check(t, r, false); len(found) != 0 || sum.Messages != 12 || sum.Bodies != 6 || sum.Accounts != 2 {
		t.Fatalf("a sound cell: findings %v, summary %v", found, sum)
	}

	// The damage.
	put := func(key string, m proto.Message) {
		b, _ := proto.Marshal(m)
		if _, err := cli.Put(ctx, prefix+key, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	get := func(key string, m proto.Message) {
		resp, err := cli.Get(ctx, prefix+key)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("get %s: %v", key, err)
		}
		proto.Unmarshal(resp.Kvs[0].Value, m)
	}
	mbKey := "accounts/" + ann.Id + "/mailboxes/" + annInbox
	mb := &storagev1.Mailbox{}
	get(mbKey, mb)
	mb.Messages += 3
	mb.Unseen = 0
	put(mbKey, mb)
	q := &storagev1.Quota{}
	get("accounts/"+bob.Id+"/quota", q)
	q.UsedBytes += 100
	put("accounts/"+bob.Id+"/quota", q)
	// A body shared by both accounts' copies counted 5; another's record gone.
	if _, err := cli.Put(ctx, prefix+"bodies/"+msgs[0].BodyKey, string(mustMarshal(t, &records.BodyRef{Refs: 5}))); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, prefix+"bodies/"+msgs[1].BodyKey); err != nil {
		t.Fatal(err)
	}
	// A record that nothing references.
	if _, err := cli.Put(ctx, prefix+"bodies/20200101/staleaaaaaaaaaaa", string(mustMarshal(t, &records.BodyRef{Refs: 1}))); err != nil {
		t.Fatal(err)
	}
	// A body file nothing knows, older than the grace; a referenced one lost.
	orphan := filepath.Join(c.fsDir, "objects", "20200101", "orphanaaaaaaaaaa")
	os.MkdirAll(filepath.Dir(orphan), 0o750)
	if err := os.WriteFile(orphan, []byte("Subject: nobody's\r\n\r\nx\r\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(orphan, old, old)
	if err := os.Remove(filepath.Join(c.fsDir, "objects", filepath.FromSlash(msgs[2].BodyKey))); err != nil {
		t.Fatal(err)
	}

	found, sum := check(t, r, false)
	want := map[storagev1.Finding_Kind]int{
		storagev1.Finding_KIND_MAILBOX_COUNTERS: 1, storagev1.Finding_KIND_QUOTA_USAGE: 1,
		storagev1.Finding_KIND_BODY_REFS: 3, storagev1.Finding_KIND_ORPHAN: 1, storagev1.Finding_KIND_BODY_MISSING: 1,
	}
	for kind, n := range want {
		if len(found[kind]) != n {
			t.Errorf("%v: %d findings, want %d: %v", kind, len(found[kind]), n, found[kind])
		}
	}
	if sum.Findings != 7 || sum.Repaired != 0 {
		t.Errorf("summary %v: want 7 findings, none repaired", sum)
	}
	if f := found[storagev1.Finding_KIND_BODY_MISSING]; len(f) == 1 && (f[0].Key != msgs[2].BodyKey || f[0].AccountId == "") {
		t.Errorf("the lost body is reported as %v, want %s with its account", f[0], msgs[2].BodyKey)
	}
	if f := found[storagev1.Finding_KIND_ORPHAN]; len(f) == 1 && f[0].Key != "20200101/orphanaaaaaaaaaa" {
		t.Errorf("orphan reported as %v", f[0])
	}
	// Before the repair, expunging the message whose record is gone fails.
	expunge := func() error {
		uid := msgs[1].Uid
		_, err := r.Messages.ExpungeMessages(ctx, &storagev1.ExpungeMessagesRequest{AccountId: ann.Id, MailboxId: annInbox,
			Uids: &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: uid, Last: uid}}}, IgnoreDeletedFlag: true})
		return err
	}
	if expunge() == nil {
		t.Fatal("expunging a message whose body record is gone succeeded before the repair")
	}

	// mailctl fsck says so and exits 1; --repair fixes what can be fixed.
	if out, err := mailctl(t, r, "", "fsck"); err == nil || !strings.Contains(out, "orphan: 20200101/orphanaaaaaaaaaa") {
		t.Fatalf("mailctl fsck on a damaged cell: %v\n%s", err, out)
	}
	out, err := mailctl(t, r, "", "fsck", "--repair")
	if err == nil || !strings.Contains(out, "7 findings, 6 repaired") || !strings.Contains(out, "1 inconsistencies left") {
		t.Fatalf("mailctl fsck --repair: %v\n%s", err, out)
	}
	found, sum = check(t, r, false)
	if len(found) != 1 || len(found[storagev1.Finding_KIND_BODY_MISSING]) != 1 || sum.Findings != 1 {
		t.Fatalf("after the repair: %v (%v); want only the lost body", found, sum)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("the orphan is still stored: %v", err)
	}
	got, _ := listAll(t, r, ann.Id, annInbox)
	if got.Messages != 6 || got.Unseen != 6 {
		t.Errorf("ann's INBOX after the repair: %d messages, %d unseen; want 6, 6", got.Messages, got.Unseen)
	}
	acct, err := r.Accounts.GetAccount(ctx, &storagev1.GetAccountRequest{Address: "bob@fsck.test"})
	if err != nil || acct.Account.Quota.UsedBytes != q.UsedBytes-100 {
		t.Errorf("bob's usage after the repair: %v %v; want %d", acct.GetAccount().GetQuota(), err, q.UsedBytes-100)
	}
	if resp, _ := cli.Get(ctx, prefix+"bodies/20200101/staleaaaaaaaaaaa"); len(resp.Kvs) != 0 {
		t.Error("the stale reference record is still there")
	}
	if err := expunge(); err != nil {
		t.Errorf("expunging after the repair: %v", err)
	}
	// Not an admin: refused.
	conn, err := dialAs(r.addr, "access")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := storagev1.NewMaintenanceServiceClient(conn).Check(ctx, &storagev1.CheckRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if err == nil {
		t.Error("the access tier may run the check")
	}
}
