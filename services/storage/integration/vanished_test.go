package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// vanishedAll pages through ListVanished and returns the UIDs (sorted) and
// whether the answer was the approximate one.
func vanishedAll(t *testing.T, r *replica, account, mailbox string, since uint64, within *storagev1.UIDSet) ([]uint32, bool) {
	t.Helper()
	req := &storagev1.ListVanishedRequest{AccountId: account, MailboxId: mailbox, SinceModseq: since, Uids: within}
	var out []uint32
	approx := false
	for pages := 0; ; pages++ {
		resp, err := r.Messages.ListVanished(ctxT(t), req)
		if err != nil {
			t.Fatalf("ListVanished since %d: %v", since, err)
		}
		approx = resp.Approximate
		for _, rg := range resp.Uids.GetRanges() {
			for u := rg.First; u <= rg.Last; u++ {
				out = append(out, u)
			}
		}
		if !resp.More {
			break
		}
		if pages > 10000 {
			t.Fatal("ListVanished pages without end")
		}
		req.PageToken, req.Revision = resp.PageToken, resp.Revision
	}
	slices.Sort(out)
	return out, approx
}

// expungeUIDs expunges exactly uids (one transaction for a few) and
// returns the mailbox's HIGHESTMODSEQ after it.
func expungeUIDs(t *testing.T, r *replica, account, mailbox string, uids ...uint32) uint64 {
	t.Helper()
	set := &storagev1.UIDSet{}
	for _, u := range uids {
		set.Ranges = append(set.Ranges, &storagev1.UIDRange{First: u, Last: u})
	}
	resp, err := r.Messages.ExpungeMessages(ctxT(t), &storagev1.ExpungeMessagesRequest{AccountId: account, MailboxId: mailbox, Uids: set, IgnoreDeletedFlag: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ExpungedUids) != len(uids) {
		t.Fatalf("expunged %v, want %v", resp.ExpungedUids, uids)
	}
	return resp.HighestModseq
}

func fillN(t *testing.T, r *replica, account, mailbox string, n int) uint64 {
	t.Helper()
	var modseq uint64
	for i := 0; i < n; i++ {
		resp, err := appendMsg(ctxT(t), r, account, mailbox, message(i, 100))
		if err != nil {
			t.Fatal(err)
		}
		modseq = resp.Modseq
	}
	return modseq
}

func vanishedKeys(t *testing.T, c *cluster, account, mailbox string) int {
	t.Helper()
	resp, err := c.etcdClient().Get(context.Background(), fmt.Sprintf("/mailfleet/v1/accounts/%s/vanished/%s/", account, mailbox), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return int(resp.Count)
}

// Every expunge (and a MOVE's source side) writes an expunge record in its
// own transaction; ListVanished answers exactly the UIDs expunged after a
// modseq, within the client's known UIDs (RFC 7162 3.2.5.1, VANISHED
// (EARLIER)).
func TestExpungeRecordsAnswerVanished(t *testing.T) {
	c := newCluster(t, options{})
	r := c.replicas[0]
	acc := setupAccount(t, r, "vanished@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	archive := mailboxID(t, r, acc.Id, "Archive")
	m0 := fillN(t, r, acc.Id, inbox, 10) // UIDs 1..10
	m1 := expungeUIDs(t, r, acc.Id, inbox, 2, 3)
	m2 := expungeUIDs(t, r, acc.Id, inbox, 7)
	mv, err := r.Messages.MoveMessages(ctxT(t), &storagev1.MoveMessagesRequest{AccountId: acc.Id, MailboxId: inbox,
		Uids: &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: 9, Last: 9}}}, DestMailboxId: archive})
	if err != nil {
		t.Fatal(err)
	}
	check := func(since uint64, within *storagev1.UIDSet, want ...uint32) {
		t.Helper()
		got, approx := vanishedAll(t, r, acc.Id, inbox, since, within)
		if approx || !slices.Equal(got, want) {
			t.Errorf("since %d within %v: got %v (approximate %v), want exactly %v", since, within, got, approx, want)
		}
	}
	check(m0, nil, 2, 3, 7, 9)
	check(m1, nil, 7, 9)
	check(m2, nil, 9)
	check(mv.HighestModseq, nil)
	check(m0, &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: 3, Last: 8}}}, 3, 7)
	check(1, nil, 2, 3, 7, 9)
	if n := vanishedKeys(t, c, acc.Id, inbox); n != 3 {
		t.Errorf("%d expunge records, want 3 (two expunges and a move)", n)
	}
	// A client error: modseq 0 is not a mod-sequence-value.
	if _, err := r.Messages.ListVanished(ctxT(t), &storagev1.ListVanishedRequest{AccountId: acc.Id, MailboxId: inbox}); err == nil {
		t.Error("ListVanished since 0 succeeded")
	}
	// Deleting a mailbox removes its records.
	box := createMailbox(t, r, acc.Id, "Box")
	fillN(t, r, acc.Id, box, 2)
	expungeUIDs(t, r, acc.Id, box, 1)
	if n := vanishedKeys(t, c, acc.Id, box); n != 1 {
		t.Fatalf("%d expunge records in Box, want 1", n)
	}
	if _, err := r.Mailbox.DeleteMailbox(ctxT(t), &storagev1.DeleteMailboxRequest{AccountId: acc.Id, Name: "Box"}); err != nil {
		t.Fatal(err)
	}
	if n := vanishedKeys(t, c, acc.Id, box); n != 0 {
		t.Errorf("%d expunge records left of a deleted mailbox", n)
	}
}

// Records beyond the count limit are pruned, oldest first, and the floor
// moves up with them: a client whose modseq is older than the floor gets
// every UID below UIDNEXT that does not exist (within its known UIDs) — a
// superset, never a miss — while a newer one still gets the exact answer.
func TestExpungeRecordsPrunedByCount(t *testing.T) {
	c := newCluster(t, options{extraArgs: []string{"--expunge-records", "3"}})
	r := c.replicas[0]
	acc := setupAccount(t, r, "pruned@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	m0 := fillN(t, r, acc.Id, inbox, 12)
	var after []uint64
	for _, u := range []uint32{1, 3, 5, 7, 9, 11} {
		after = append(after, expungeUIDs(t, r, acc.Id, inbox, u))
	}
	if n := vanishedKeys(t, c, acc.Id, inbox); n > 3 {
		t.Errorf("%d expunge records kept, want at most 3", n)
	}
	// Too old: every gap below UIDNEXT (13), approximately.
	got, approx := vanishedAll(t, r, acc.Id, inbox, m0, nil)
	if !approx || !slices.Equal(got, []uint32{1, 3, 5, 7, 9, 11}) {
		t.Errorf("since %d: got %v approximate %v, want the approximate answer 1,3,5,7,9,11", m0, got, approx)
	}
	got, approx = vanishedAll(t, r, acc.Id, inbox, m0, &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: 4, Last: 10}}})
	if !approx || !slices.Equal(got, []uint32{5, 7, 9}) {
		t.Errorf("since %d within 4:10: got %v approximate %v, want 5,7,9", m0, got, approx)
	}
	// Recent enough: exact.
	got, approx = vanishedAll(t, r, acc.Id, inbox, after[3], nil)
	if approx || !slices.Equal(got, []uint32{9, 11}) {
		t.Errorf("since %d: got %v approximate %v, want exactly 9,11", after[3], got, approx)
	}
}

// Records older than the retention are pruned too (looked at every 16th
// record), and the answer from before them falls back to the gaps.
func TestExpungeRecordsPrunedByAge(t *testing.T) {
	c := newCluster(t, options{extraArgs: []string{"--expunge-retention", "1ms"}})
	r := c.replicas[0]
	acc := setupAccount(t, r, "aged@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	m0 := fillN(t, r, acc.Id, inbox, 20)
	for u := uint32(1); u <= 16; u++ {
		expungeUIDs(t, r, acc.Id, inbox, u)
	}
	if n := vanishedKeys(t, c, acc.Id, inbox); n >= 16 {
		t.Errorf("%d expunge records kept past the retention", n)
	}
	got, approx := vanishedAll(t, r, acc.Id, inbox, m0, nil)
	want := []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	if !approx || !slices.Equal(got, want) {
		t.Errorf("since %d: got %v approximate %v, want the approximate 1:16", m0, got, approx)
	}
}

// ListVanished answers in bounded pages, whatever the mailbox's size: the
// approximate answer (records pruned, one kept) scans at most 5 000 index
// keys per page; the pages together name every expunged UID exactly once.
// 6 500 messages, every other one of the first 2 000 expunged in one
// request (which takes many transactions).
func TestListVanishedPagesAreBounded(t *testing.T) {
	c := newCluster(t, options{extraArgs: []string{"--expunge-records", "1"}})
	r := c.replicas[0]
	acc := setupAccount(t, r, "pages@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	fillMailbox(ctx, t, r, acc.Id, inbox, 6500, 4, 2<<10)
	mb, _ := listAll(t, r, acc.Id, inbox)
	set := &storagev1.UIDSet{}
	var want []uint32
	for u := uint32(1); u <= 2000; u += 2 {
		set.Ranges = append(set.Ranges, &storagev1.UIDRange{First: u, Last: u})
		want = append(want, u)
	}
	resp, err := r.Messages.ExpungeMessages(ctx, &storagev1.ExpungeMessagesRequest{AccountId: acc.Id, MailboxId: inbox, Uids: set, IgnoreDeletedFlag: true})
	if err != nil || len(resp.ExpungedUids) != len(want) {
		t.Fatalf("expunge: %d UIDs, %v", len(resp.GetExpungedUids()), err)
	}
	req := &storagev1.ListVanishedRequest{AccountId: acc.Id, MailboxId: inbox, SinceModseq: mb.HighestModseq}
	var got []uint32
	pages := 0
	for {
		page, err := r.Messages.ListVanished(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if !page.Approximate {
			t.Fatalf("page %d is not the approximate answer", pages)
		}
		if n := len(page.Uids.GetRanges()); n > 5001 {
			t.Fatalf("page %d holds %d ranges", pages, n)
		}
		for _, rg := range page.Uids.GetRanges() {
			for u := rg.First; u <= rg.Last; u++ {
				got = append(got, u)
			}
		}
		if !page.More {
			break
		}
		req.PageToken, req.Revision = page.PageToken, page.Revision
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("%d UIDs in %d pages, want the %d expunged", len(got), pages, len(want))
	}
	if pages < 2 {
		t.Fatalf("the answer over 5 500 keys came in %d page", pages)
	}
}
