package e2e

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// bulkMessage is a small message numbered i.
func bulkMessage(i int) []byte {
	return []byte(fmt.Sprintf("From: sender%d@example.org\r\nTo: bulk@example.test\r\nSubject: bulk %d\r\n"+
		"Message-ID: <bulk-%d@example.org>\r\n\r\nmessage %d\r\n", i%7, i, i, i))
}

// The bulk operations a client does every day, on more messages than one
// storage transaction holds (they used to fail at ~40): COPY 1:* with its
// COPYUID, a COPY over quota that leaves the destination as it was (RFC
// 9051 6.4.7), STORE 1:* + EXPUNGE (RFC 9051 6.4.3 — emptying the Trash),
// CLOSE expunging (6.4.2), DELETE of a folder with its messages (6.3.4),
// and POP3 DELE of 1 000 messages + QUIT (RFC 1939 §6, UPDATE state).
func TestBulkOperationsOverIMAPAndPOP3(t *testing.T) {
	const n = 2000
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	acc := c.CreateAccount("bulk@example.test", "bulk-secret")
	deliverMany(t, c, "bulk@example.test", n, bulkMessage)
	cl := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, cl, "bulk@example.test", "bulk-secret")
	if err := cl.Create("Projects", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := cl.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != n {
		t.Fatalf("SELECT INBOX: %v messages, %v", sel, err)
	}
	all := imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}

	// COPY 1:* Projects: every message, with its COPYUID.
	data, err := cl.Copy(all, "Projects").Wait()
	if err != nil {
		t.Fatalf("COPY 1:* Projects: %v", err)
	}
	if srcs, ok := data.SourceUIDs.Nums(); !ok || len(srcs) != n {
		t.Fatalf("COPYUID source set names %d messages, want %d", len(srcs), n)
	}
	if dsts, ok := data.DestUIDs.Nums(); !ok || len(dsts) != n {
		t.Fatalf("COPYUID destination set names %d messages, want %d", len(dsts), n)
	}
	status := func(name string) *imap.StatusData {
		t.Helper()
		st, err := cl.Status(name, &imap.StatusOptions{NumMessages: true, UIDNext: true}).Wait()
		if err != nil {
			t.Fatalf("STATUS %s: %v", name, err)
		}
		return st
	}
	if st := status("Projects"); *st.NumMessages != n {
		t.Fatalf("Projects holds %d messages after COPY, want %d", *st.NumMessages, n)
	}

	// A COPY over quota fails as a whole: NO [OVERQUOTA], Trash unchanged.
	c.SetQuota(acc.Id, 0, 2*n+n/2)
	trashBefore := status("Trash")
	_, err = cl.Copy(all, "Trash").Wait()
	var imapErr *imap.Error
	if !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeOverQuota {
		t.Fatalf("COPY over quota: %v, want NO [OVERQUOTA]", err)
	}
	if st := status("Trash"); *st.NumMessages != 0 || st.UIDNext != trashBefore.UIDNext {
		t.Fatalf("Trash after a failed COPY: %d messages, UIDNEXT %d → %d", *st.NumMessages, trashBefore.UIDNext, st.UIDNext)
	}
	c.SetQuota(acc.Id, 0, 0)

	// STORE 1:* +FLAGS.SILENT (\Deleted), then EXPUNGE: one untagged
	// EXPUNGE per message, the INBOX empty.
	if err := cl.Store(all, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatalf("STORE 1:* +FLAGS.SILENT (\\Deleted): %v", err)
	}
	expunged, err := cl.Expunge().Collect()
	if err != nil || len(expunged) != n {
		t.Fatalf("EXPUNGE: %d expunged, %v", len(expunged), err)
	}
	if st := status("INBOX"); *st.NumMessages != 0 {
		t.Fatalf("INBOX holds %d messages after EXPUNGE", *st.NumMessages)
	}

	// CLOSE expunges the \Deleted messages of the selected mailbox.
	if _, err := cl.Select("Projects", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Store(imap.SeqSet{imap.SeqRange{Start: 1, Stop: n / 2}}, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Unselect().Wait(); err != nil { // UNSELECT: nothing expunged
		t.Fatal(err)
	}
	if st := status("Projects"); *st.NumMessages != n {
		t.Fatalf("UNSELECT expunged: %d left", *st.NumMessages)
	}
	if _, err := cl.Select("Projects", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := cl.UnselectAndExpunge().Wait(); err != nil { // CLOSE
		t.Fatalf("CLOSE: %v", err)
	}
	if st := status("Projects"); *st.NumMessages != n-n/2 {
		t.Fatalf("Projects holds %d after CLOSE, want %d", *st.NumMessages, n-n/2)
	}

	// DELETE of the folder with its messages; the quota follows.
	if err := cl.Delete("Projects").Wait(); err != nil {
		t.Fatalf("DELETE Projects: %v", err)
	}
	if _, err := cl.Status("Projects", nil).Wait(); err == nil {
		t.Fatal("Projects still answers STATUS after DELETE")
	}
	if uids := c.InboxUIDs(acc.Id); len(uids) != 0 {
		t.Fatalf("INBOX has %d entries", len(uids))
	}
	cl.Logout().Wait()

	// POP3: DELE of 1 000 messages, then QUIT removes them all.
	const pops = 1000
	c.CreateAccount("pop-bulk@example.test", "pop-secret")
	deliverMany(t, c, "pop-bulk@example.test", pops, bulkMessage)
	p := pop3Dial(t, c.Access[0].POP3S)
	p.do("USER pop-bulk@example.test", "+OK")
	p.do("PASS pop-secret", fmt.Sprintf("+OK maildrop has %d messages", pops))
	for i := 1; i <= pops; i++ {
		p.do(fmt.Sprintf("DELE %d", i), "+OK")
	}
	p.do("QUIT", "+OK")
	q := pop3Dial(t, c.Access[0].POP3S)
	q.do("USER pop-bulk@example.test", "+OK")
	q.do("PASS pop-secret", "+OK maildrop has 0 messages")
	q.do("STAT", "+OK 0 0")
	q.do("QUIT", "+OK")
}

// Expunges made elsewhere reach a selected session numbered right (RFC 9051
// 7.5.1: each EXPUNGE's number counts the ones before it): replaying them on
// the session's own list leaves exactly the messages that remain. The pod
// applies a run of expunges in one pass (emptying a 100 000-message mailbox
// one removal at a time would stall every session on it).
func TestExpungesElsewhereAreNumberedRight(t *testing.T) {
	const n = 300
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	c.CreateAccount("numbers@example.test", "numbers-secret")
	for i := 0; i < n; i++ {
		c.Deliver([]string{"numbers@example.test"}, bulkMessage(i))
	}
	ev := newEvents()
	watcher := dialIMAP(t, c.Access[1].IMAPS, ev)
	login(t, watcher, "numbers@example.test", "numbers-secret")
	if _, err := watcher.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	view := make([]uint32, n) // UIDs by sequence number, as the watcher knows them
	for i := range view {
		view[i] = uint32(i + 1)
	}
	// Delete a scattered third of the messages through the other pod.
	actor := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, actor, "numbers@example.test", "numbers-secret")
	if _, err := actor.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var doomed imap.UIDSet
	want := map[uint32]bool{}
	for uid := uint32(1); uid <= n; uid++ {
		if uid%3 == 0 || uid%7 == 0 {
			doomed.AddNum(imap.UID(uid))
		} else {
			want[uid] = true
		}
	}
	if err := actor.Store(doomed, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := actor.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	// NOOP reports what happened elsewhere (RFC 9051 6.1.2).
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := watcher.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		ev.mu.Lock()
		got := len(ev.expunge)
		ev.mu.Unlock()
		if got == n-len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d EXPUNGEs reached the watcher, want %d", got, n-len(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
	ev.mu.Lock()
	for _, seq := range ev.expunge {
		if seq < 1 || int(seq) > len(view) {
			t.Fatalf("EXPUNGE %d with %d messages left", seq, len(view))
		}
		view = append(view[:seq-1], view[seq:]...)
	}
	ev.mu.Unlock()
	if len(view) != len(want) {
		t.Fatalf("%d messages left in the watcher's view, want %d", len(view), len(want))
	}
	for _, uid := range view {
		if !want[uid] {
			t.Fatalf("UID %d left in the watcher's view was expunged", uid)
		}
	}
	msgs, err := watcher.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != len(view) {
		t.Fatalf("FETCH 1:* UID: %d messages, %v", len(msgs), err)
	}
	for i, m := range msgs {
		if uint32(m.UID) != view[i] {
			t.Fatalf("message %d is UID %d, the EXPUNGEs said %d", i+1, m.UID, view[i])
		}
	}
}
