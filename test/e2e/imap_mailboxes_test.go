package e2e

import (
	"strings"
	"testing"
)

// LIST (extended, status, special-use), CREATE, RENAME, DELETE, SUBSCRIBE, STATUS.
func TestIMAPMailboxCommands(t *testing.T) {
	c, _ := startIMAP(t)
	r := rawDial(t, c.Access[0].IMAPS, true)
	r.expect("LOGIN user@example.test user-secret", "OK")
	list := r.expect(`LIST "" "*"`, "OK")
	for _, want := range []string{`"/" INBOX`, `\Sent) "/" "Sent"`, `\Drafts`, `\Trash`, `\Junk`, `\Archive`} {
		if !contains(list, want) {
			t.Fatalf("LIST lacks %s: %q", want, list)
		}
	}
	r.expect("CREATE Work/2026/Q1", "OK")
	r.expect("CREATE Work", "NO [ALREADYEXISTS]")
	r.expect(`CREATE Stuff (USE (\Flagged))`, "OK")
	list = r.expect(`LIST "" "Work*"`, "OK")
	if !contains(list, `(\HasChildren) "/" "Work"`) || !contains(list, `(\HasNoChildren) "/" "Work/2026/Q1"`) {
		t.Fatalf("LIST Work*: %q", list)
	}
	if got := r.expect(`LIST "" "Work/%"`, "OK"); len(got) != 1 || !strings.HasSuffix(got[0], `"Work/2026"`) {
		t.Fatalf("LIST Work/%%: %q", got)
	}
	special := r.expect(`LIST (SPECIAL-USE) "" "*"`, "OK")
	if len(special) != 6 || contains(special, "INBOX") {
		t.Fatalf("LIST (SPECIAL-USE): %q", special)
	}
	r.expect("RENAME Work Jobs", "OK")
	list = r.expect(`LIST "" "*"`, "OK")
	if contains(list, "Work") || !contains(list, "Jobs/2026/Q1") {
		t.Fatalf("after RENAME: %q", list)
	}
	r.expect("DELETE Jobs", "NO [HASCHILDREN]")
	r.expect("DELETE INBOX", "NO")
	r.expect("DELETE Jobs/2026/Q1", "OK")
	r.expect("UNSUBSCRIBE Junk", "OK")
	lsub := r.expect(`LIST (SUBSCRIBED) "" "*"`, "OK")
	if contains(lsub, "Junk") || !contains(lsub, `\Subscribed`) {
		t.Fatalf("LIST (SUBSCRIBED): %q", lsub)
	}
	r.expect("APPEND INBOX {5+}\r\nhello", "OK [APPENDUID")
	st := r.expect("STATUS INBOX (MESSAGES UIDNEXT UNSEEN SIZE)", "OK")
	if !contains(st, "MESSAGES 1") || !contains(st, "UIDNEXT 2") || !contains(st, "UNSEEN 1") || !contains(st, "SIZE 5") {
		t.Fatalf("STATUS: %q", st)
	}
	ls := r.expect(`LIST "" "INBOX" RETURN (STATUS (MESSAGES SIZE))`, "OK")
	if !contains(ls, `STATUS "INBOX" (MESSAGES 1 SIZE 5)`) && !contains(ls, `STATUS INBOX (MESSAGES 1 SIZE 5)`) {
		t.Fatalf("LIST-STATUS: %q", ls)
	}
	r.expect("SELECT Nowhere", "NO")
	r.expect("APPEND Nowhere {5+}\r\nhello", "NO [TRYCREATE]")
	// SEARCHRES: SEARCH RETURN (SAVE), then FETCH $.
	r.expect("SELECT INBOX", "OK")
	r.expect("SEARCH RETURN (SAVE) UNSEEN", "OK")
	if got := r.expect("FETCH $ (UID)", "OK"); len(got) != 1 || !strings.Contains(got[0], "UID 1") {
		t.Fatalf("FETCH $: %q", got)
	}
}
