package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// appendPart is one message of a raw APPEND: what precedes its literal
// (flags, date; may be empty) and its bytes.
type appendPart struct {
	pre  string
	body string
}

// rawAppend sends APPEND mbox with the messages as synchronizing literals,
// waiting for each continuation; it returns the untagged lines, the tagged
// status, and how many literals the server asked for.
func (c *rawIMAP) rawAppend(mbox string, parts []appendPart) (untagged []string, status string, sent int) {
	c.t.Helper()
	c.n++
	tag := fmt.Sprintf("t%d", c.n)
	fmt.Fprintf(c.conn, "%s APPEND %s", tag, mbox)
	for _, p := range parts {
		pre := ""
		if p.pre != "" {
			pre = p.pre + " "
		}
		fmt.Fprintf(c.conn, " %s{%d}\r\n", pre, len(p.body))
		for {
			l := c.line()
			if strings.HasPrefix(l, "+") {
				break
			}
			if strings.HasPrefix(l, tag+" ") {
				return untagged, strings.TrimPrefix(l, tag+" "), sent
			}
			untagged = append(untagged, l)
		}
		fmt.Fprint(c.conn, p.body)
		sent++
	}
	fmt.Fprint(c.conn, "\r\n")
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, strings.TrimPrefix(l, tag+" "), sent
		}
		untagged = append(untagged, l)
	}
}

// statusMessages answers STATUS mbox (MESSAGES).
func (c *rawIMAP) statusMessages(mbox string) string {
	c.t.Helper()
	lines := c.expect("STATUS "+mbox+" (MESSAGES)", "OK")
	for _, l := range lines {
		if strings.HasPrefix(l, "* STATUS ") {
			return l[strings.Index(l, "("):]
		}
	}
	c.t.Fatalf("STATUS %s: no STATUS response in %q", mbox, lines)
	return ""
}

// extLogin starts a cluster, logs a new account in on the first access
// pod and checks that the capability list after login names capability
// (RFC 9051 7.2.2: it lists the extensions the server implements).
func extLogin(t *testing.T, o cluster.Options, user, capability string) (*cluster.Cluster, *rawIMAP) {
	t.Helper()
	c := cluster.Start(t, binDir, minioServer, o)
	c.CreateAccount(user, "ext-secret")
	r := rawDial(t, c.Access[0].IMAPS, true)
	r.expect("LOGIN "+user+" ext-secret", "OK")
	if caps := capsOf(t, r); !strings.Contains(caps, " "+capability+" ") {
		t.Fatalf("%s not announced after login: %s", capability, caps)
	}
	return c, r
}

// expectBAD checks that each command is a client error (RFC 9051 7.1.5:
// BAD, never NO [SERVERBUG]).
func expectBAD(t *testing.T, r *rawIMAP, cmds ...string) {
	t.Helper()
	for _, cmd := range cmds {
		if _, status := r.do(cmd); !strings.HasPrefix(status, "BAD") {
			t.Errorf("%s: %q, want BAD", cmd, status)
		}
	}
}

func capsOf(t *testing.T, r *rawIMAP) string {
	t.Helper()
	lines := r.expect("CAPABILITY", "OK")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "* CAPABILITY ") {
		t.Fatalf("CAPABILITY: %q", lines)
	}
	return lines[0] + " "
}

// RFC 3502 MULTIAPPEND: several messages in one APPEND, appended all or
// none; APPENDUID names every UID (RFC 4315 section 3: "append-uid =
// uniqueid / uid-set", a set only for MULTIAPPEND).
func TestIMAPMultiAppend(t *testing.T) {
	c, r := extLogin(t, cluster.Options{Access: 1, AccessArgs: []string{"--max-message-size", "100000"}}, "multi@example.test", "MULTIAPPEND")
	r.expect("CREATE saved-messages", "OK")

	// RFC 3502 section 6.3.11, the example: two messages, each with its
	// flags and date.
	msg1 := "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.example.COM>\r\nSubject: afternoon meeting\r\nTo: mooch@owatagu.example.net\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
	msg2 := "Date: Mon, 7 Feb 1994 22:43:04 -0800 (PST)\r\nFrom: Joe Mooch <mooch@OWATAGU.example.net>\r\nSubject: Re: afternoon meeting\r\nTo: foobar@blurdybloop.example.com\r\n\r\n3:30 is fine with me.\r\n"
	_, status, sent := r.rawAppend("saved-messages", []appendPart{
		{pre: `(\Seen) " 7-Feb-1994 21:52:25 -0800"`, body: msg1},
		{pre: `(\Seen) " 7-Feb-1994 22:43:04 -0800"`, body: msg2},
	})
	if sent != 2 || !strings.HasPrefix(status, "OK [APPENDUID ") {
		t.Fatalf("MULTIAPPEND of the RFC's example: %q after %d literals", status, sent)
	}
	if f := strings.Fields(status); len(f) < 4 || f[3] != "1:2]" {
		t.Fatalf("APPENDUID %q, want the UID set 1:2", status)
	}
	if got := r.statusMessages("saved-messages"); got != "(MESSAGES 2)" {
		t.Fatalf("after MULTIAPPEND: %s", got)
	}
	r.expect("SELECT saved-messages", "OK")
	lines := r.expect("FETCH 1:2 (FLAGS INTERNALDATE RFC822.SIZE)", "OK")
	// The internal dates are the same instants (stored in UTC); the first
	// SELECT makes the new messages \Recent (RFC 3501 2.3.2).
	want := [][]string{
		{"* 1 FETCH (", `FLAGS (\Seen \Recent)`, `INTERNALDATE " 8-Feb-1994 05:52:25 +0000"`, fmt.Sprintf("RFC822.SIZE %d", len(msg1))},
		{"* 2 FETCH (", `FLAGS (\Seen \Recent)`, `INTERNALDATE " 8-Feb-1994 06:43:04 +0000"`, fmt.Sprintf("RFC822.SIZE %d", len(msg2))},
	}
	if len(lines) != 2 {
		t.Fatalf("FETCH 1:2: %q", lines)
	}
	for i, l := range lines {
		for _, w := range want[i] {
			if !strings.Contains(l, w) {
				t.Fatalf("appended message %d: %q, want %s", i+1, l, w)
			}
		}
	}
	r.expect("CLOSE", "OK")

	// RFC 3502 section 3: "If the server fails to append any message, none
	// of the messages are appended". A second message over the limit:
	// refused at its literal (NO [TOOBIG] instead of a continuation).
	_, status, sent = r.rawAppend("saved-messages", []appendPart{{body: msg1}, {body: strings.Repeat("x", 200000)}})
	if sent != 1 || !strings.HasPrefix(status, "NO [TOOBIG]") {
		t.Fatalf("MULTIAPPEND with an oversized second message: %q after %d literals", status, sent)
	}
	// A syntax error in the third message: BAD, none appended.
	_, status, _ = r.rawAppend("saved-messages", []appendPart{{body: msg1}, {body: msg2}, {pre: `(\Seen) "not a date"`, body: msg2}})
	if !strings.HasPrefix(status, "BAD") {
		t.Fatalf("MULTIAPPEND with a malformed date in the third message: %q, want BAD", status)
	}
	// An unknown mailbox: NO [TRYCREATE] (RFC 3501 6.3.11), nothing made.
	_, status, _ = r.rawAppend("nosuch", []appendPart{{body: msg1}, {body: msg2}})
	if !strings.HasPrefix(status, "NO [TRYCREATE]") {
		t.Fatalf("MULTIAPPEND to a missing mailbox: %q", status)
	}
	if got := r.statusMessages("saved-messages"); got != "(MESSAGES 2)" {
		t.Fatalf("failed MULTIAPPENDs appended messages: %s", got)
	}

	// Non-synchronizing literals (RFC 7888) in one MULTIAPPEND.
	fmt.Fprintf(r.conn, "n1 APPEND saved-messages {%d+}\r\n%s (\\Flagged) {%d+}\r\n%s {%d+}\r\n%s\r\n", len(msg1), msg1, len(msg2), msg2, len(msg1), msg1)
	for {
		l := r.line()
		if strings.HasPrefix(l, "n1 ") {
			if !strings.HasPrefix(l, "n1 OK [APPENDUID ") || !strings.Contains(l, " 3:5]") {
				t.Fatalf("MULTIAPPEND with LITERAL+: %q, want APPENDUID 3:5", l)
			}
			break
		}
	}
	if got := r.statusMessages("saved-messages"); got != "(MESSAGES 5)" {
		t.Fatalf("after the LITERAL+ MULTIAPPEND: %s", got)
	}

	// A connection that drops in the middle of the command appends
	// nothing: the first message was read whole (the server asked for the
	// second), the second is cut.
	d := rawDial(t, c.Access[0].IMAPS, true)
	d.expect("LOGIN multi@example.test ext-secret", "OK")
	fmt.Fprintf(d.conn, "d1 APPEND saved-messages {%d}\r\n", len(msg1))
	if l := d.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("first literal: %q", l)
	}
	fmt.Fprintf(d.conn, "%s {%d}\r\n", msg1, len(msg2))
	if l := d.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("second literal: %q", l)
	}
	fmt.Fprint(d.conn, msg2[:20])
	d.conn.Close()
	// The session on the same pod is done with the dropped one's first
	// message by then (it asked for the second): a commit would show.
	if got := r.statusMessages("saved-messages"); got != "(MESSAGES 5)" {
		t.Fatalf("a dropped MULTIAPPEND appended: %s", got)
	}
	// The next APPEND gets the next UID: nothing was taken.
	_, status, _ = r.rawAppend("saved-messages", []appendPart{{body: msg1}})
	if !strings.HasPrefix(status, "OK [APPENDUID ") || !strings.Contains(status, " 6]") {
		t.Fatalf("single APPEND after the dropped one: %q, want UID 6", status)
	}
}

// uidsIn lists the UIDs of the FETCH responses among lines.
func uidsIn(lines []string) []string {
	var out []string
	for _, l := range lines {
		if !strings.Contains(l, " FETCH (") {
			continue
		}
		f := strings.Fields(strings.NewReplacer("(", " ", ")", " ").Replace(l))
		for i := range f[:len(f)-1] {
			if f[i] == "UID" {
				out = append(out, f[i+1])
			}
		}
	}
	return out
}

// COPY and MOVE to the selected mailbox itself. RFC 9051 6.4.7 (COPY)
// names any destination mailbox; RFC 6851 section 3.3 (MOVE) "the
// destination mailbox" without excluding the source. A COPY duplicates
// with new UIDs; a MOVE gives new UIDs and expunges the old messages,
// COPYUID first (RFC 6851 section 4.3).
func TestIMAPCopyMoveWithinMailbox(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("same@example.test", "same-secret")
	r := rawDial(t, c.Access[0].IMAPS, true)
	r.expect("LOGIN same@example.test same-secret", "OK")
	msg := "Subject: one\r\n\r\nbody\r\n"
	if _, status, _ := r.rawAppend("INBOX", []appendPart{{pre: `(\Flagged)`, body: msg}, {body: msg}, {body: msg}}); !strings.HasPrefix(status, "OK") {
		t.Fatalf("APPEND: %q", status)
	}
	sel := r.expect("SELECT INBOX", "OK")
	validity := ""
	for _, l := range sel {
		if strings.HasPrefix(l, "* OK [UIDVALIDITY ") {
			validity = strings.TrimSuffix(strings.Fields(l)[3], "]")
		}
	}
	lines, status := r.do("UID COPY 1:2 INBOX")
	if want := "OK [COPYUID " + validity + " 1:2 4:5]"; !strings.HasPrefix(status, want) {
		t.Fatalf("UID COPY 1:2 INBOX: %q, want %s…", status, want)
	}
	if !contains(lines, "* 5 EXISTS") {
		lines = append(lines, r.expect("NOOP", "OK")...)
		if !contains(lines, "* 5 EXISTS") {
			t.Fatalf("no EXISTS for the copies: %q", lines)
		}
	}
	fetched := r.expect("UID FETCH 4:5 (FLAGS)", "OK")
	if len(fetched) != 2 || !strings.Contains(fetched[0], `\Flagged`) || strings.Contains(fetched[1], `\Flagged`) {
		t.Fatalf("the copies' flags: %q", fetched)
	}
	lines, status = r.do("UID MOVE 3 INBOX")
	if !strings.HasPrefix(status, "OK") {
		t.Fatalf("UID MOVE 3 INBOX: %q", status)
	}
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "* OK [COPYUID "+validity+" 3 6]") {
		t.Fatalf("MOVE's first response: %q, want COPYUID %s 3 6", lines, validity)
	}
	if !contains(lines, "* 3 EXPUNGE") {
		t.Fatalf("MOVE within the mailbox did not expunge the old message: %q", lines)
	}
	if got := strings.Join(uidsIn(r.expect("UID FETCH 1:* (UID)", "OK")), ","); got != "1,2,4,5,6" {
		t.Fatalf("UIDs after COPY and MOVE within INBOX: %s, want 1,2,4,5,6", got)
	}
	o := rawDial(t, c.Access[0].IMAPS, true)
	o.expect("LOGIN same@example.test same-secret", "OK")
	if got := o.statusMessages("INBOX"); got != "(MESSAGES 5)" {
		t.Fatalf("another session sees %s", got)
	}
}

// fetchFlags answers the FETCH FLAGS response lines of a sequence set.
func (c *rawIMAP) fetchFlags(set string) []string {
	c.t.Helper()
	var out []string
	for _, l := range c.expect("FETCH "+set+" (FLAGS)", "OK") {
		if strings.Contains(l, " FETCH (") {
			out = append(out, l)
		}
	}
	return out
}

func lineWith(lines []string, prefix string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// RFC 3501 section 2.3.2, \Recent: "This session is the first session to
// have been notified about this message; if the session is read-write,
// subsequent sessions will not see \Recent set for this message." RFC 3501
// 6.3.2: "EXAMINE MUST NOT cause messages to lose the \Recent flag." RFC
// 9051 removed \Recent: an IMAP4rev2 session neither sees nor takes it.
// Two access pods: the claim is shared through the storage tier.
func TestIMAPRecent(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	c.CreateAccount("recent@example.test", "recent-secret")
	login := func(pod int) *rawIMAP {
		r := rawDial(t, c.Access[pod].IMAPS, true)
		r.expect("LOGIN recent@example.test recent-secret", "OK")
		return r
	}
	c.Deliver([]string{"recent@example.test"}, []byte("Subject: r1\r\n\r\none\r\n"))
	c.Deliver([]string{"recent@example.test"}, []byte("Subject: r2\r\n\r\ntwo\r\n"))

	a, b := login(0), login(1)
	// STATUS RECENT counts the messages no session has seen yet.
	if l := lineWith(a.expect("STATUS INBOX (RECENT)", "OK"), "* STATUS"); !strings.HasSuffix(l, "(RECENT 2)") {
		t.Fatalf("STATUS RECENT before any SELECT: %q", l)
	}
	if l := lineWith(a.expect(`LIST "" "INBOX" RETURN (STATUS (RECENT MESSAGES))`, "OK"), "* STATUS"); !strings.Contains(l, "RECENT 2") {
		t.Fatalf("LIST-STATUS RECENT before any SELECT: %q", l)
	}
	// EXAMINE shows them recent and takes nothing.
	ex := a.expect("EXAMINE INBOX", "OK [READ-ONLY]")
	if !contains(ex, "* 2 RECENT") {
		t.Fatalf("EXAMINE: %q, want * 2 RECENT", ex)
	}
	for _, l := range a.fetchFlags("1:2") {
		if !strings.Contains(l, `\Recent`) {
			t.Fatalf("EXAMINE'd message without \\Recent: %q", l)
		}
	}
	a.expect("CLOSE", "OK")

	// The first SELECT, on the other pod, takes them.
	sel := b.expect("SELECT INBOX", "OK [READ-WRITE]")
	if !contains(sel, "* 2 RECENT") {
		t.Fatalf("first SELECT: %q, want * 2 RECENT", sel)
	}
	for _, l := range b.fetchFlags("1:2") {
		if !strings.Contains(l, `\Recent`) {
			t.Fatalf("first SELECT's FETCH without \\Recent: %q", l)
		}
	}
	// RFC 3501 6.4.4: RECENT, NEW (recent and unseen), OLD (not recent).
	for cmd, want := range map[string]string{"SEARCH RECENT": "* SEARCH 1 2", "SEARCH NEW": "* SEARCH 1 2", "SEARCH OLD": "* SEARCH"} {
		if got := lineWith(b.expect(cmd, "OK"), "* SEARCH"); got != want {
			t.Fatalf("%s in the first session: %q, want %q", cmd, got, want)
		}
	}
	// A second SELECT (the first pod) sees nothing recent.
	sel = a.expect("SELECT INBOX", "OK [READ-WRITE]")
	if !contains(sel, "* 0 RECENT") {
		t.Fatalf("second SELECT: %q, want * 0 RECENT", sel)
	}
	for _, l := range a.fetchFlags("1:2") {
		if strings.Contains(l, `\Recent`) {
			t.Fatalf("second session sees \\Recent: %q", l)
		}
	}
	for cmd, want := range map[string]string{"SEARCH RECENT": "* SEARCH", "SEARCH OLD": "* SEARCH 1 2"} {
		if got := lineWith(a.expect(cmd, "OK"), "* SEARCH"); got != want {
			t.Fatalf("%s in the second session: %q, want %q", cmd, got, want)
		}
	}
	if l := lineWith(a.expect("STATUS INBOX (RECENT)", "OK"), "* STATUS"); !strings.HasSuffix(l, "(RECENT 0)") {
		t.Fatalf("STATUS RECENT after the claim: %q", l)
	}
	if l := lineWith(a.expect(`LIST "" "INBOX" RETURN (STATUS (RECENT))`, "OK"), "* STATUS"); !strings.HasSuffix(l, "(RECENT 0)") {
		t.Fatalf("LIST-STATUS RECENT after the claim: %q", l)
	}

	// Every FETCH response with the message's flags carries \Recent: the
	// STORE's own, and the unsolicited one of another session's change
	// (RFC 3501 7.4.2: FLAGS is the whole list).
	if st := b.expect(`STORE 1 +FLAGS (\Flagged)`, "OK"); !contains(st, `\Recent`) || !contains(st, `\Flagged`) {
		t.Fatalf("STORE response to the session with \\Recent: %q", st)
	}
	a.expect(`STORE 2 +FLAGS ($Later)`, "OK")
	if u := b.expect("NOOP", "OK"); !contains(u, `$Later`) || !contains(u, `\Recent`) {
		t.Fatalf("unsolicited FETCH to the session with \\Recent: %q", u)
	}

	// A message arriving while both pods' sessions have INBOX selected is
	// recent to exactly one of them.
	c.Deliver([]string{"recent@example.test"}, []byte("Subject: r3\r\n\r\nthree\r\n"))
	na, nb := a.expect("NOOP", "OK"), b.expect("NOOP", "OK")
	if !contains(na, "* 3 EXISTS") && !contains(a.expect("NOOP", "OK"), "* 3 EXISTS") {
		t.Fatalf("first pod's session not told of the new message")
	}
	if !contains(nb, "* 3 EXISTS") && !contains(b.expect("NOOP", "OK"), "* 3 EXISTS") {
		t.Fatalf("second pod's session not told of the new message")
	}
	fa, fb := a.fetchFlags("3"), b.fetchFlags("3")
	ra, rb := strings.Contains(strings.Join(fa, ""), `\Recent`), strings.Contains(strings.Join(fb, ""), `\Recent`)
	if ra == rb {
		t.Fatalf("message 3 recent to both or neither: %q / %q", fa, fb)
	}

	// IMAP4rev2: no RECENT response, no \Recent, and no claim.
	d := login(0)
	d.expect("CREATE Other", "OK")
	d.expect("APPEND Other {12+}\r\nSubject: o\r\n", "OK")
	v2 := login(1)
	v2.expect("ENABLE IMAP4rev2", "OK")
	sel = v2.expect("SELECT Other", "OK")
	if contains(sel, "RECENT") {
		t.Fatalf("IMAP4rev2 SELECT: %q has RECENT", sel)
	}
	if f := v2.fetchFlags("1"); len(f) != 1 || strings.Contains(f[0], `\Recent`) {
		t.Fatalf("IMAP4rev2 FETCH FLAGS: %q", f)
	}
	if !contains(d.expect("SELECT Other", "OK"), "* 1 RECENT") {
		t.Fatalf("the IMAP4rev2 session took \\Recent")
	}

	// RFC 3501 7.3.2: RECENT "is generated whenever the size of the
	// mailbox changes". A message arriving while the session idles is
	// claimed then, and RECENT follows its EXISTS within the IDLE.
	b.idle()
	c.Deliver([]string{"recent@example.test"}, []byte("Subject: r4\r\n\r\nfour\r\n"))
	got := b.waitLine("* 4 EXISTS")
	got = append(got, b.waitFor("RECENT in IDLE", 15*time.Second, func(l string) bool { return strings.HasSuffix(l, " RECENT") })...)
	after := b.done()
	if l := got[len(got)-1]; l != "* 3 RECENT" && l != "* 4 RECENT" {
		t.Fatalf("IDLE told %q, want * 3 RECENT or * 4 RECENT (1, 2, maybe 3, and 4)", got)
	}
	if contains(after, "RECENT") {
		t.Fatalf("RECENT again after DONE: %q", after)
	}
	if f := b.fetchFlags("4"); len(f) != 1 || !strings.Contains(f[0], `\Recent`) {
		t.Fatalf("the idling session's FETCH of the arrival: %q, want \\Recent", f)
	}
	a.expect("NOOP", "OK")
	if f := a.fetchFlags("4"); len(f) != 1 || strings.Contains(f[0], `\Recent`) {
		t.Fatalf("the other session's FETCH of the arrival: %q, want no \\Recent", f)
	}
}

// field returns the parenthesized or single value after name in a FETCH
// or STATUS line ("" if absent).
func field(line, name string) string {
	i := strings.Index(line, " "+name+" ")
	if i < 0 {
		i = strings.Index(line, "("+name+" ")
		if i < 0 {
			return ""
		}
	}
	rest := line[i+len(name)+2:]
	switch {
	case strings.HasPrefix(rest, "("):
		return rest[:strings.IndexByte(rest, ')')+1]
	case strings.HasPrefix(rest, `"`):
		return rest[:strings.IndexByte(rest[1:], '"')+2]
	}
	if j := strings.IndexAny(rest, " )"); j >= 0 {
		return rest[:j]
	}
	return rest
}

// RFC 8474 OBJECTID. Section 4.1: CREATE answers "OK [MAILBOXID (id)]";
// 4.2: SELECT and EXAMINE answer "* OK [MAILBOXID (id)]", and RENAME keeps
// it; 4.3: STATUS MAILBOXID; 5.1: EMAILID is the same for a message copied
// or moved (the same stored body) and differs for another message; 5.2:
// THREADID, NIL here (no threads are kept); section 6 (formal syntax):
// search-key =/ "EMAILID" SP objectid / "THREADID" SP objectid.
func TestIMAPObjectID(t *testing.T) {
	_, r := extLogin(t, cluster.Options{Access: 1}, "oid@example.test", "OBJECTID")
	_, status := r.do("CREATE foo")
	if !strings.HasPrefix(status, "OK [MAILBOXID (") {
		t.Fatalf("CREATE: %q, want OK [MAILBOXID (…)]", status)
	}
	id := status[len("OK [MAILBOXID ") : strings.Index(status, ")]")+1]
	if l := lineWith(r.expect("STATUS foo (MAILBOXID MESSAGES)", "OK"), "* STATUS"); field(l, "MAILBOXID") != id {
		t.Fatalf("STATUS MAILBOXID: %q, want %s", l, id)
	}
	r.expect("RENAME foo bar", "OK")
	if l := lineWith(r.expect("STATUS bar (MAILBOXID)", "OK"), "* STATUS"); field(l, "MAILBOXID") != id {
		t.Fatalf("STATUS MAILBOXID after RENAME: %q, want %s", l, id)
	}
	if l := lineWith(r.expect("EXAMINE bar", "OK"), "* OK [MAILBOXID"); l != "* OK [MAILBOXID "+id+"] Ok" {
		t.Fatalf("EXAMINE: MAILBOXID line %q, want %s", l, id)
	}
	inboxID := lineWith(r.expect("SELECT INBOX", "OK"), "* OK [MAILBOXID")
	if inboxID == "" || strings.Contains(inboxID, id) {
		t.Fatalf("SELECT INBOX: MAILBOXID %q (bar's is %s)", inboxID, id)
	}

	msgA, msgB := "Subject: a\r\n\r\nfirst\r\n", "Subject: b\r\n\r\nsecond\r\n"
	r.rawAppend("INBOX", []appendPart{{body: msgA}, {body: msgB}})
	r.expect("NOOP", "OK")
	lines := r.expect("FETCH 1:2 (EMAILID THREADID)", "OK")
	if len(lines) != 2 {
		t.Fatalf("FETCH EMAILID: %q", lines)
	}
	e1, e2 := field(lines[0], "EMAILID"), field(lines[1], "EMAILID")
	if !strings.HasPrefix(e1, "(") || e1 == e2 || field(lines[0], "THREADID") != "NIL" {
		t.Fatalf("EMAILID/THREADID of two messages: %q", lines)
	}
	r.expect("COPY 1 bar", "OK")
	r.expect("MOVE 2 bar", "OK")
	r.expect("SELECT bar", "OK")
	lines = r.expect("FETCH 1:2 (EMAILID)", "OK")
	if len(lines) != 2 || field(lines[0], "EMAILID") != e1 || field(lines[1], "EMAILID") != e2 {
		t.Fatalf("EMAILIDs after COPY and MOVE: %q, want %s and %s", lines, e1, e2)
	}
	if got := lineWith(r.expect("UID SEARCH EMAILID "+strings.Trim(e2, "()"), "OK"), "* SEARCH"); got != "* SEARCH 2" {
		t.Fatalf("SEARCH EMAILID: %q, want * SEARCH 2", got)
	}
	if got := lineWith(r.expect("SEARCH NOT EMAILID "+strings.Trim(e2, "()"), "OK"), "* SEARCH"); got != "* SEARCH 1" {
		t.Fatalf("SEARCH NOT EMAILID: %q, want * SEARCH 1", got)
	}
	if got := lineWith(r.expect("SEARCH THREADID T123", "OK"), "* SEARCH"); got != "* SEARCH" {
		t.Fatalf("SEARCH THREADID: %q, want none", got)
	}
	// RFC 8474 section 4.3: MAILBOXID is a STATUS item, so LIST-STATUS
	// (RFC 5819) returns it too.
	if l := lineWith(r.expect(`LIST "" "bar" RETURN (STATUS (MAILBOXID))`, "OK"), "* STATUS"); field(l, "MAILBOXID") != id {
		t.Fatalf("LIST-STATUS MAILBOXID: %q, want %s", l, id)
	}
	expectBAD(t, r, "SEARCH EMAILID M1*2", "SEARCH EMAILID", "STATUS bar (MAILBOXID FOO)")
}

// RFC 8514 SAVEDATE. Section 4.1: FETCH SAVEDATE is when the message was
// saved in the mailbox (here: the APPEND), not its internal date; section
// 4.2: SAVEDBEFORE, SAVEDON, SAVEDSINCE compare it as dates; and
// SAVEDATESUPPORTED matches every message of a mailbox that keeps save
// dates.
func TestIMAPSaveDate(t *testing.T) {
	_, r := extLogin(t, cluster.Options{Access: 1}, "sd@example.test", "SAVEDATE")
	r.rawAppend("INBOX", []appendPart{{pre: `" 7-Feb-1994 21:52:25 -0800"`, body: "Subject: old\r\n\r\nx\r\n"}})
	r.expect("SELECT INBOX", "OK")
	l := lineWith(r.expect("FETCH 1 (SAVEDATE INTERNALDATE)", "OK"), "* 1 FETCH")
	saved, internal := field(l, "SAVEDATE"), field(l, "INTERNALDATE")
	if !strings.HasPrefix(saved, `"`) || saved == internal || strings.Contains(saved, "1994") {
		t.Fatalf("FETCH SAVEDATE: %q, want the APPEND's date-time, not the internal date", l)
	}
	day := strings.TrimSpace(strings.Fields(strings.Trim(saved, `"`))[0]) // dd-Mon-yyyy
	for cmd, want := range map[string]string{
		"SEARCH SAVEDBEFORE 1-Jan-2000":    "* SEARCH",
		"SEARCH SAVEDSINCE 1-Jan-2000":     "* SEARCH 1",
		"SEARCH SAVEDON " + day:            "* SEARCH 1",
		"SEARCH SAVEDON 7-Feb-1994":        "* SEARCH",
		"SEARCH BEFORE 1-Jan-2000":         "* SEARCH 1", // the internal date
		"SEARCH SAVEDATESUPPORTED":         "* SEARCH 1",
		"SEARCH NOT SAVEDSINCE 1-Jan-2000": "* SEARCH",
	} {
		if got := lineWith(r.expect(cmd, "OK"), "* SEARCH"); got != want {
			t.Errorf("%s: %q, want %q", cmd, got, want)
		}
	}
	expectBAD(t, r, "SEARCH SAVEDON 31-Foo-2020")
}

// RFC 8970 PREVIEW. Section 3: up to 256 characters of the message's text,
// decoded, whitespace and markup removed; the example of section 5 answers
// PREVIEW "…" as a string; PREVIEW (LAZY) may be asked (section 3.1); a
// message without text previews as the empty string.
func TestIMAPPreview(t *testing.T) {
	_, r := extLogin(t, cluster.Options{Access: 1}, "pv@example.test", "PREVIEW")
	alt := "Subject: alt\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"Gr=FC=DFe aus\r\n\r\n   M=FCnchen,=\r\n Preview   text!\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<p>not this</p>\r\n--b--\r\n"
	htmlOnly := "Subject: html\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"PGh0bWw+PGhlYWQ+PHN0eWxlPnAge2NvbG9yOnJlZH08L3N0eWxlPjwvaGVhZD48Ym9keT48cD5I\r\nZWxsbyAmYW1wOyB3ZWxjb21lPC9wPjxwPnNlY29uZDwvcD48L2JvZHk+PC9odG1sPg==\r\n"
	long := "Subject: long\r\n\r\n" + strings.Repeat("abcdefghi ", 3000) + "\r\n"
	attach := "Subject: pdf\r\nMIME-Version: 1.0\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
	r.rawAppend("INBOX", []appendPart{{body: alt}, {body: htmlOnly}, {body: long}, {body: attach}})
	r.expect("SELECT INBOX", "OK")
	// Without UTF8=ACCEPT, 8-bit text goes as a literal (RFC 3501 4.3).
	lines := r.expect("FETCH 1 (PREVIEW)", "OK")
	if strings.Join(lines, "\n") != "* 1 FETCH (UID 1 PREVIEW {35}\nGrüße aus München, Preview text!)" &&
		strings.Join(lines, "\n") != "* 1 FETCH (PREVIEW {35}\nGrüße aus München, Preview text!)" {
		t.Fatalf("PREVIEW of 8-bit text to an IMAP4rev1 client: %q", lines)
	}
	r.expect("ENABLE UTF8=ACCEPT", "OK")
	lines = r.expect("FETCH 1:4 (PREVIEW)", "OK")
	want := []string{
		`* 1 FETCH (UID 1 PREVIEW "Grüße aus München, Preview text!")`,
		`* 2 FETCH (UID 2 PREVIEW "Hello & welcome second")`,
		"",
		`* 4 FETCH (UID 4 PREVIEW "")`,
	}
	if len(lines) != 4 {
		t.Fatalf("FETCH PREVIEW: %q", lines)
	}
	for i, w := range want {
		got := strings.Replace(lines[i], " UID "+fmt.Sprint(i+1), "", 1) // UID is there or not
		w = strings.Replace(w, " UID "+fmt.Sprint(i+1), "", 1)
		if i == 2 {
			// 256 characters: 25 whole "abcdefghi " groups and "abcdef".
			p := field(got, "PREVIEW")
			if p != `"`+strings.TrimSpace(strings.Repeat("abcdefghi ", 26))[:256]+`"` {
				t.Errorf("long message's PREVIEW: %d characters %q", len(p)-2, p)
			}
			continue
		}
		if got != w {
			t.Errorf("PREVIEW of message %d:\n got %s\nwant %s", i+1, lines[i], w)
		}
	}
	// PREVIEW (LAZY) with other items.
	l := lineWith(r.expect("FETCH 1 (FLAGS PREVIEW (LAZY))", "OK"), "* 1 FETCH")
	if field(l, "PREVIEW") != `"Grüße aus München, Preview text!"` && field(l, "PREVIEW") != "NIL" {
		t.Fatalf("PREVIEW (LAZY): %q", l)
	}
	expectBAD(t, r, "FETCH 1 (PREVIEW (FOO))", "FETCH 1 (PREVIEW ())")
}

// listRow is one LIST or LSUB response, parsed.
type listRow struct {
	attrs     map[string]bool
	childInfo bool
}

// listRows runs a LIST or LSUB and returns its rows by mailbox name, and
// the names whose LIST was followed by a STATUS.
func listRows(t *testing.T, r *rawIMAP, cmd string) (map[string]listRow, map[string]bool) {
	t.Helper()
	rows, status := map[string]listRow{}, map[string]bool{}
	last := ""
	for _, l := range r.expect(cmd, "OK") {
		if strings.HasPrefix(l, "* STATUS ") {
			name := strings.Trim(strings.Fields(l)[2], `"`)
			if name != last {
				t.Fatalf("%s: STATUS of %q does not follow its LIST (after %q)", cmd, name, last)
			}
			status[name] = true
			continue
		}
		if !strings.HasPrefix(l, "* LIST ") && !strings.HasPrefix(l, "* LSUB ") {
			continue
		}
		attrEnd := strings.IndexByte(l, ')')
		row := listRow{attrs: map[string]bool{}, childInfo: strings.HasSuffix(l, ` ("CHILDINFO" ("SUBSCRIBED"))`)}
		for _, a := range strings.Fields(l[strings.IndexByte(l, '(')+1 : attrEnd]) {
			row.attrs[strings.ToLower(a)] = true
		}
		rest := strings.TrimSpace(l[attrEnd+1:])
		rest = strings.TrimSpace(rest[strings.IndexByte(rest, ' ')+1:]) // the delimiter
		name := rest
		if strings.HasPrefix(rest, `"`) {
			name = rest[1 : 1+strings.IndexByte(rest[1:], '"')]
		} else if i := strings.IndexByte(rest, ' '); i >= 0 {
			name = rest[:i]
		}
		rows[name] = row
		last = name
	}
	return rows, status
}

func hasAttrs(row listRow, attrs ...string) bool {
	for _, a := range attrs {
		if !row.attrs[strings.ToLower(a)] {
			return false
		}
	}
	return true
}

// LIST-EXTENDED (RFC 5258) with the mailboxes of its section 5 examples,
// LSUB's "%" rule (RFC 3501 6.3.9), LIST-STATUS (RFC 5819) and SPECIAL-USE
// (RFC 6154).
func TestIMAPListExtended(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("lx@example.test", "lx-secret")
	r := rawDial(t, c.Access[0].IMAPS, true)
	r.expect("LOGIN lx@example.test lx-secret", "OK")
	for _, m := range []string{"Fruit/Apple", "Fruit/Banana", "Fruit/Peach", "Tofu", "Vegetable/Broccoli", "Vegetable/Corn"} {
		r.expect("CREATE "+m, "OK")
	}
	// CREATE subscribes here: the others are unsubscribed.
	for _, m := range []string{"Fruit", "Fruit/Apple", "Tofu", "Vegetable/Corn"} {
		r.expect("UNSUBSCRIBE "+m, "OK")
	}
	for _, m := range []string{"Fruit/Banana", "Fruit/Peach", "Vegetable", "Vegetable/Broccoli"} {
		r.expect("SUBSCRIBE "+m, "OK")
	}
	// RFC 3501 6.3.6: a subscription outlives its mailbox.
	r.expect("DELETE Fruit/Peach", "OK")

	// RFC 5258 section 5, example 4: LIST (SUBSCRIBED) "" "*" lists
	// Fruit/Peach as \Subscribed \NonExistent.
	rows, _ := listRows(t, r, `LIST (SUBSCRIBED) "" "*"`)
	for name, attrs := range map[string][]string{
		"Fruit/Banana": {`\Subscribed`}, "Fruit/Peach": {`\Subscribed`, `\NonExistent`},
		"Vegetable": {`\Subscribed`}, "Vegetable/Broccoli": {`\Subscribed`},
	} {
		if row, ok := rows[name]; !ok || !hasAttrs(row, attrs...) {
			t.Errorf(`LIST (SUBSCRIBED) "" "*": %s %v, want %v`, name, rows[name].attrs, attrs)
		}
	}
	for _, name := range []string{"Fruit", "Fruit/Apple", "Tofu", "Vegetable/Corn"} {
		if _, ok := rows[name]; ok {
			t.Errorf(`LIST (SUBSCRIBED) "" "*" lists the unsubscribed %s`, name)
		}
	}
	if rows["Vegetable"].attrs[`\nonexistent`] {
		t.Errorf("Vegetable is \\NonExistent")
	}
	// A plain LIST does not list the subscription without a mailbox.
	if rows, _ := listRows(t, r, `LIST "" "*" RETURN (SUBSCRIBED)`); rows["Fruit/Peach"].attrs != nil || !hasAttrs(rows["Vegetable"], `\Subscribed`) {
		t.Errorf(`LIST "" "*" RETURN (SUBSCRIBED): Fruit/Peach %v, Vegetable %v`, rows["Fruit/Peach"].attrs, rows["Vegetable"].attrs)
	}

	// RFC 5258 section 5, example 6: LIST (SUBSCRIBED RECURSIVEMATCH) ""
	// "%" RETURN (CHILDREN): Fruit (not subscribed) and Vegetable
	// (subscribed) both with CHILDINFO ("SUBSCRIBED"); Tofu not at all.
	rows, _ = listRows(t, r, `LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)`)
	if row, ok := rows["Fruit"]; !ok || !row.childInfo || !hasAttrs(row, `\HasChildren`) || row.attrs[`\subscribed`] {
		t.Errorf("RECURSIVEMATCH: Fruit %+v, want \\HasChildren and CHILDINFO, not \\Subscribed", row)
	}
	if row, ok := rows["Vegetable"]; !ok || !row.childInfo || !hasAttrs(row, `\HasChildren`, `\Subscribed`) {
		t.Errorf("RECURSIVEMATCH: Vegetable %+v, want \\HasChildren \\Subscribed and CHILDINFO", row)
	}
	if _, ok := rows["Tofu"]; ok {
		t.Errorf("RECURSIVEMATCH lists Tofu")
	}
	// CHILDINFO only with RECURSIVEMATCH (RFC 5258 section 3.5).
	if rows, _ := listRows(t, r, `LIST (SUBSCRIBED) "" "%"`); rows["Vegetable"].childInfo || rows["Fruit"].attrs != nil {
		t.Errorf(`LIST (SUBSCRIBED) "" "%%": %+v`, rows)
	}

	// RFC 3501 6.3.9: LSUB "" "%" returns Fruit, flagged \Noselect, for
	// its subscribed child; LSUB "" "*" lists the subscribed names, the one
	// without a mailbox too, and not Fruit.
	rows, _ = listRows(t, r, `LSUB "" "%"`)
	if !hasAttrs(rows["Fruit"], `\Noselect`) || rows["Vegetable"].attrs == nil || rows["Vegetable"].attrs[`\noselect`] || rows["Tofu"].attrs != nil || rows["Fruit/Banana"].attrs != nil {
		t.Errorf(`LSUB "" "%%": %+v`, rows)
	}
	rows, _ = listRows(t, r, `LSUB "" "*"`)
	if rows["Fruit"].attrs != nil || rows["Fruit/Banana"].attrs == nil || rows["Fruit/Peach"].attrs == nil || rows["Vegetable/Broccoli"].attrs == nil {
		t.Errorf(`LSUB "" "*": %+v`, rows)
	}

	// RFC 5819 section 2: STATUS follows the LIST of each selectable
	// mailbox, never a \NonExistent one.
	r.rawAppend("Tofu", []appendPart{{body: "Subject: s\r\n\r\nsoy\r\n"}, {pre: `(\Seen)`, body: "Subject: t\r\n\r\nbean\r\n"}})
	rows, status := listRows(t, r, `LIST (SUBSCRIBED) "" "*" RETURN (STATUS (MESSAGES UNSEEN SIZE))`)
	if status["Fruit/Peach"] || !status["Vegetable"] || !status["Fruit/Banana"] {
		t.Errorf("LIST-STATUS: STATUS for %v", status)
	}
	st := lineWith(r.expect(`LIST "" "Tofu" RETURN (STATUS (MESSAGES UNSEEN SIZE))`, "OK"), "* STATUS")
	if want := fmt.Sprintf(`* STATUS "Tofu" (MESSAGES 2 UNSEEN 1 SIZE %d)`, len("Subject: s\r\n\r\nsoy\r\n")+len("Subject: t\r\n\r\nbean\r\n")); st != want && st != strings.Replace(want, `"Tofu"`, "Tofu", 1) {
		t.Errorf("LIST-STATUS of Tofu: %q, want %q", st, want)
	}

	// Re-creating the subscribed name takes the kept subscription.
	r.expect("CREATE Fruit/Peach", "OK")
	if rows, _ := listRows(t, r, `LIST (SUBSCRIBED) "" "Fruit/*"`); !hasAttrs(rows["Fruit/Peach"], `\Subscribed`) || rows["Fruit/Peach"].attrs[`\nonexistent`] {
		t.Errorf("Fruit/Peach re-created: %v", rows["Fruit/Peach"].attrs)
	}
	// A subscription to a name that never existed, and its removal.
	r.expect("SUBSCRIBE Nowhere", "OK")
	if rows, _ := listRows(t, r, `LIST (SUBSCRIBED) "" "Nowhere"`); !hasAttrs(rows["Nowhere"], `\NonExistent`, `\Subscribed`) {
		t.Errorf("subscribed name that never existed: %v", rows["Nowhere"].attrs)
	}
	r.expect("UNSUBSCRIBE Nowhere", "OK")
	if rows, _ := listRows(t, r, `LIST (SUBSCRIBED) "" "Nowhere"`); len(rows) != 0 {
		t.Errorf("unsubscribed name still listed: %+v", rows)
	}

	// RFC 6154 section 2 and 5.2 examples: LIST (SPECIAL-USE) "" "*"
	// lists exactly the special-use mailboxes, each with its attribute;
	// RETURN (SPECIAL-USE) adds the attribute to a plain LIST.
	rows, _ = listRows(t, r, `LIST (SPECIAL-USE) "" "*"`)
	want := map[string]string{"Drafts": `\Drafts`, "Sent": `\Sent`, "Trash": `\Trash`, "Junk": `\Junk`, "Archive": `\Archive`}
	if len(rows) != len(want) {
		t.Errorf(`LIST (SPECIAL-USE) "" "*": %+v`, rows)
	}
	for name, attr := range want {
		if !hasAttrs(rows[name], attr) {
			t.Errorf("LIST (SPECIAL-USE): %s %v, want %s", name, rows[name].attrs, attr)
		}
	}
	if rows, _ := listRows(t, r, `LIST "" "%" RETURN (SPECIAL-USE)`); !hasAttrs(rows["Sent"], `\Sent`) || len(rows["Tofu"].attrs) == 0 || rows["Tofu"].attrs[`\sent`] {
		t.Errorf(`LIST "" "%%" RETURN (SPECIAL-USE): Sent %v, Tofu %v`, rows["Sent"].attrs, rows["Tofu"].attrs)
	}
}

// STATUS=SIZE (RFC 8438 section 3): "SIZE: The total size of the mailbox
// in octets", at least the sum of the messages' RFC822.SIZE; also for a
// message stored with bare LFs, whose RFC822.SIZE counts them as CRLF.
func TestIMAPStatusSize(t *testing.T) {
	_, r := extLogin(t, cluster.Options{Access: 1}, "size@example.test", "STATUS=SIZE")
	r.expect("CREATE sized", "OK")
	if l := lineWith(r.expect("STATUS sized (SIZE)", "OK"), "* STATUS"); !strings.HasSuffix(l, "(SIZE 0)") {
		t.Fatalf("STATUS SIZE of an empty mailbox: %q", l)
	}
	r.rawAppend("sized", []appendPart{{body: "Subject: crlf\r\n\r\nline one\r\nline two\r\n"}, {body: "Subject: lf\n\nbare\nline\nfeeds\n"}})
	r.expect("SELECT sized", "OK")
	var sum int
	for _, l := range r.expect("FETCH 1:* (RFC822.SIZE)", "OK") {
		var n int
		fmt.Sscanf(field(l, "RFC822.SIZE"), "%d", &n)
		sum += n
	}
	var size int
	fmt.Sscanf(strings.TrimSuffix(field(lineWith(r.expect("STATUS sized (SIZE MESSAGES)", "OK"), "* STATUS"), "SIZE"), ")"), "%d", &size)
	if size < sum || sum == 0 {
		t.Fatalf("STATUS SIZE %d, the messages' RFC822.SIZE add up to %d", size, sum)
	}
}

// UTF8=ACCEPT (RFC 6855). Section 3: after ENABLE UTF8=ACCEPT mailbox
// names are UTF-8 quoted strings both ways, and the server sends them so;
// a session that did not enable it keeps modified UTF-7 (RFC 3501 5.1.3)
// for the same mailbox. Section 4: APPEND's "UTF8" "(" literal8 ")".
func TestIMAPUTF8Accept(t *testing.T) {
	c, u := extLogin(t, cluster.Options{Access: 1}, "utf8@example.test", "UTF8=ACCEPT")
	if _, status := u.do(`CREATE "Grüße"`); !strings.HasPrefix(status, "BAD") {
		t.Fatalf("8-bit mailbox name before ENABLE UTF8=ACCEPT: %q, want BAD", status)
	}
	// Section 4's UTF8 APPEND data item is part of UTF8=ACCEPT, which the
	// client has not enabled (section 3): BAD, nothing appended, and the
	// literal's bytes are read as the message, never run as commands.
	evil := "Subject: x\r\n\r\nx1 CREATE Evil\r\n"
	for _, sync := range []bool{false, true} {
		plus := "+"
		if sync {
			plus = ""
		}
		fmt.Fprintf(u.conn, "a0 APPEND INBOX UTF8 (~{%d%s}\r\n", len(evil), plus)
		if !sync {
			fmt.Fprintf(u.conn, "%s)\r\n", evil)
		}
		for {
			l := u.line()
			if strings.HasPrefix(l, "+") && sync {
				fmt.Fprintf(u.conn, "%s)\r\n", evil)
				continue
			}
			if strings.HasPrefix(l, "a0 ") {
				if !strings.HasPrefix(l, "a0 BAD") {
					t.Fatalf("APPEND UTF8 before ENABLE UTF8=ACCEPT (synchronizing %v): %q, want BAD", sync, l)
				}
				break
			}
			if strings.HasPrefix(l, "x1 ") {
				t.Fatalf("the literal's bytes ran as a command: %q", l)
			}
		}
	}
	if got := u.statusMessages("INBOX"); got != "(MESSAGES 0)" {
		t.Fatalf("after the refused APPENDs: INBOX %s", got)
	}
	if l := u.expect(`LIST "" Evil`, "OK"); len(l) != 0 {
		t.Fatalf("the literal's bytes ran as a command: LIST %q", l)
	}
	if en := u.expect("ENABLE UTF8=ACCEPT", "OK"); !contains(en, "* ENABLED UTF8=ACCEPT") {
		t.Fatalf("ENABLE UTF8=ACCEPT: %q", en)
	}
	u.expect(`CREATE "Grüße"`, "OK")
	if l := lineWith(u.expect(`LIST "" "Gr*"`, "OK"), "* LIST"); !strings.HasSuffix(l, `"Grüße"`) {
		t.Fatalf("LIST to a UTF8=ACCEPT session: %q", l)
	}
	msg := "Subject: Grüße\r\nFrom: jöran@example.test\r\n\r\nHallo\r\n"
	fmt.Fprintf(u.conn, "a1 APPEND \"Grüße\" UTF8 (~{%d+}\r\n%s)\r\n", len(msg), msg)
	for {
		l := u.line()
		if strings.HasPrefix(l, "a1 ") {
			if !strings.HasPrefix(l, "a1 OK") {
				t.Fatalf("APPEND UTF8 (literal8): %q", l)
			}
			break
		}
	}
	if l := lineWith(u.expect(`STATUS "Grüße" (MESSAGES)`, "OK"), "* STATUS"); l != `* STATUS "Grüße" (MESSAGES 1)` {
		t.Fatalf("STATUS with a UTF-8 name: %q", l)
	}
	// RFC 6855 section 3 (erratum 4029): after ENABLE UTF8=ACCEPT a SEARCH
	// with a charset SHOULD get BAD; without one, UTF-8 strings search.
	u.expect(`SELECT "Grüße"`, "OK")
	if _, status := u.do(`SEARCH CHARSET UTF-8 SUBJECT "Grüße"`); !strings.HasPrefix(status, "BAD") {
		t.Fatalf("SEARCH CHARSET after ENABLE UTF8=ACCEPT: %q, want BAD", status)
	}
	if got := lineWith(u.expect(`SEARCH SUBJECT "Grüße"`, "OK"), "* SEARCH"); got != "* SEARCH 1" {
		t.Fatalf("SEARCH SUBJECT with a UTF-8 string: %q", got)
	}
	u.expect("CLOSE", "OK")

	o := rawDial(t, c.Access[0].IMAPS, true)
	o.expect("LOGIN utf8@example.test ext-secret", "OK")
	if l := lineWith(o.expect(`LIST "" "Gr*"`, "OK"), "* LIST"); !strings.HasSuffix(l, "Gr&APwA3w-e") && !strings.HasSuffix(l, `"Gr&APwA3w-e"`) {
		t.Fatalf("LIST to an IMAP4rev1 session: %q, want modified UTF-7", l)
	}
	o.expect("SELECT Gr&APwA3w-e", "OK")
	lines := o.expect("FETCH 1 (BODY.PEEK[])", "OK")
	if !strings.Contains(strings.Join(lines, "\n"), "jöran@example.test") {
		t.Fatalf("the UTF-8 message as stored: %q", lines)
	}
}

// storedFlags leaves out \Recent, the session flag an IMAP4rev1 client
// sees on messages new to it (RFC 3501 2.3.2): what remains is what the
// mailbox stores.
func storedFlags(flags []imap.Flag) []imap.Flag {
	out := flags[:0:0]
	for _, f := range flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			out = append(out, f)
		}
	}
	return out
}
