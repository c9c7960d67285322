package e2e

// Transcript tests of IMAP NOTIFY (RFC 5465) over real sockets, from the
// RFC's examples and formal syntax (section 8), with the changes made
// through the other access pod. Each check quotes the section it tests.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// waitFor reads unsolicited lines until one satisfies ok, within timeout,
// and returns the lines read (the match last). No command is sent: the
// client listens, as RFC 5465 section 3.1 says it does.
func (c *rawIMAP) waitFor(what string, timeout time.Duration, ok func(string) bool) []string {
	c.t.Helper()
	var got []string
	deadline := time.Now().Add(timeout)
	for {
		c.conn.SetReadDeadline(deadline)
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("no %s within %v (got %q): %v", what, timeout, got, err)
		}
		l = strings.TrimRight(l, "\r\n")
		got = append(got, l)
		if ok(l) {
			return got
		}
	}
}

// waitLine waits for an unsolicited line that starts with prefix.
func (c *rawIMAP) waitLine(prefix string) []string {
	c.t.Helper()
	return c.waitFor(fmt.Sprintf("%q", prefix), 15*time.Second, func(l string) bool { return strings.HasPrefix(l, prefix) })
}

// quiet checks that nothing arrives for d.
func (c *rawIMAP) quiet(d time.Duration) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(d))
	if l, err := c.r.ReadString('\n'); err == nil || l != "" {
		c.t.Fatalf("unexpected %q", l)
	}
}

// send writes a command line without waiting for its answer (IDLE, DONE).
func (c *rawIMAP) send(line string) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.conn, "%s\r\n", line); err != nil {
		c.t.Fatal(err)
	}
}

// idle starts IDLE (RFC 2177) and waits for its continuation.
func (c *rawIMAP) idle() {
	c.t.Helper()
	c.n++
	c.send(fmt.Sprintf("t%d IDLE", c.n))
	c.waitLine("+ ")
}

// done ends IDLE; it returns the lines up to the tagged OK.
func (c *rawIMAP) done() []string {
	c.t.Helper()
	c.send("DONE")
	tag := fmt.Sprintf("t%d ", c.n)
	lines := c.waitFor("IDLE's OK", 15*time.Second, func(l string) bool { return strings.HasPrefix(l, tag) })
	if !strings.HasPrefix(lines[len(lines)-1], tag+"OK") {
		c.t.Fatalf("IDLE ended with %q", lines)
	}
	return lines[:len(lines)-1]
}

// appendMsg APPENDs a small message to mailbox.
func (c *rawIMAP) appendMsg(mailbox, subject string) {
	c.t.Helper()
	msg := fmt.Sprintf("Subject: %s\r\nFrom: a@example.test\r\n\r\nbody\r\n", subject)
	c.expect(fmt.Sprintf("APPEND %s {%d+}\r\n%s", mailbox, len(msg), msg), "OK")
}

func notifyDeliver(c *cluster.Cluster, user, subject string) {
	c.Deliver([]string{user}, []byte(fmt.Sprintf("Subject: %s\r\nFrom: a@example.test\r\n\r\nbody\r\n", subject)))
}

// reStatusLine parses "* STATUS mailbox (items)".
var reStatusLine = regexp.MustCompile(`^\* STATUS ("[^"]*"|\S+) \((.*)\)$`)

// statusItems parses a STATUS line into its mailbox and items, or "" when
// the line is no STATUS.
func statusItems(l string) (string, map[string]uint64) {
	m := reStatusLine.FindStringSubmatch(l)
	if m == nil {
		return "", nil
	}
	f := strings.Fields(m[2])
	items := map[string]uint64{}
	for i := 0; i+1 < len(f); i += 2 {
		n, _ := strconv.ParseUint(f[i+1], 10, 64)
		items[f[i]] = n
	}
	return strings.Trim(m[1], `"`), items
}

// statusOf answers a STATUS command for mailbox (a notification of
// another mailbox may come with it).
func statusOf(t *testing.T, r *rawIMAP, mailbox, items string) map[string]uint64 {
	t.Helper()
	for _, l := range r.expect(fmt.Sprintf("STATUS %s (%s)", mailbox, items), "OK") {
		if name, it := statusItems(l); name == mailbox {
			return it
		}
	}
	t.Fatalf("STATUS %s: no STATUS response", mailbox)
	return nil
}

// RFC 5465 section 8's grammar and section 5's rules, section 3.1's
// BADEVENT, and the capability.
func TestIMAPNotifySyntax(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("nf0@example.test", "nf0-secret")
	r := rawDial(t, c.Access[0].IMAPS, true)
	// Section 8: capability =/ "NOTIFY"; command-auth =/ notify.
	if caps := r.expect("CAPABILITY", "OK"); contains(caps, " NOTIFY") {
		t.Fatalf("NOTIFY before login: %q", caps)
	}
	r.expect("NOTIFY NONE", "BAD")
	r.expect("LOGIN nf0@example.test nf0-secret", "OK")
	if caps := r.expect("CAPABILITY", "OK"); !contains(caps, " NOTIFY") {
		t.Fatalf("no NOTIFY after login: %q", caps)
	}
	for _, cmd := range []string{
		"NOTIFY",
		"NOTIFY SET",
		"NOTIFY SET STATUS",
		"NOTIFY GET",
		"NOTIFY SET (STATUS) (PERSONAL NONE)", // status-indicator = SP "STATUS", no list
		"NOTIFY SET ((INBOX) (MessageNew MessageExpunge))",       // "mailboxes" is required
		"NOTIFY SET (PERSONAL ())",                               // events = "(" event *(SP event) ")" / "NONE"
		"NOTIFY SET (PERSONAL MessageNew)",                       // unparenthesised event (erratum 2318)
		"NOTIFY SET (SUBTREE (MessageNew MessageExpunge))",       // one-or-more-mailbox
		"NOTIFY SET (PERSONAL (MessageNew MessageExpunge)) NONE", // trailing garbage
		// Section 5.2/5.3: "If MessageNew is specified, MessageExpunge MUST
		// also be specified" and the other way round.
		"NOTIFY SET (PERSONAL (MessageNew))",
		"NOTIFY SET (SELECTED (MessageExpunge))",
		// Section 5.1: FlagChange and AnnotationChange require both.
		"NOTIFY SET (PERSONAL (FlagChange))",
		"NOTIFY SET (INBOXES (MessageNew FlagChange))",
		// Section 8: "Only one of them can be specified in a NOTIFY
		// command", and the selected filters take message events.
		"NOTIFY SET (SELECTED NONE) (SELECTED-DELAYED NONE)",
		"NOTIFY SET (SELECTED (MailboxName))",
		// fetch-att only for the selected mailbox, and no \Seen.
		"NOTIFY SET (PERSONAL (MessageNew (UID) MessageExpunge))",
		"NOTIFY SET (SELECTED (MessageNew (BODY[]) MessageExpunge))",
	} {
		if _, st := r.do(cmd); !strings.HasPrefix(st, "BAD") {
			t.Errorf("%s -> %q, want BAD", cmd, st)
		}
	}
	// Section 3.1: "If the server does not support a requested event, it
	// MUST respond with NO [BADEVENT]", naming the events it supports.
	const badEvent = "NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]"
	for _, cmd := range []string{
		"NOTIFY SET (PERSONAL (MessageNew MessageExpunge AnnotationChange))",
		"NOTIFY SET (SELECTED (MessageNew MessageExpunge FlagChange AnnotationChange))",
		"NOTIFY SET (PERSONAL (MailboxMetadataChange))",
		"NOTIFY SET (PERSONAL (ServerMetadataChange))",
		"NOTIFY SET (PERSONAL (XFutureEvent))", // event-ext = atom
	} {
		if _, st := r.do(cmd); !strings.HasPrefix(st, badEvent) {
			t.Errorf("%s -> %q, want %s", cmd, st, badEvent)
		}
	}
	// The errata's example (EID 2318) is accepted.
	r.expect("SELECT INBOX", "OK")
	r.expect("NOTIFY SET (selected (MessageNew (uid body.peek[header.fields (from to subject)]) MessageExpunge)) (subtree Lists (MessageNew MessageExpunge)) (mailboxes misc (MessageNew MessageExpunge))", "OK")
	r.expect("NOTIFY NONE", "OK")
}

// Other mailboxes: sections 3.1 (SET STATUS), 5.1 to 5.5, through the
// other pod and with no command in progress or in IDLE.
func TestIMAPNotifyOtherMailboxes(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	const user = "nf1@example.test"
	c.CreateAccount(user, "nf1-secret")
	a := csLogin(t, c, 0, user, "nf1-secret")
	b := csLogin(t, c, 1, user, "nf1-secret")
	a.expect("SELECT Archive", "OK")

	// Section 3.1: "NOTIFY SET STATUS" sends the STATUS of every mailbox
	// of the filters (not of the selected one) before the tagged OK.
	st := a.expect("NOTIFY SET STATUS (SELECTED (MessageNew MessageExpunge FlagChange)) (PERSONAL (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))", "OK")
	got := map[string]map[string]uint64{}
	for _, l := range st {
		if name, items := statusItems(l); name != "" {
			got[name] = items
		}
	}
	for _, name := range []string{"INBOX", "Drafts", "Sent", "Trash", "Junk"} {
		it, ok := got[name]
		if !ok || it["MESSAGES"] != 0 || it["UIDNEXT"] == 0 || it["UIDVALIDITY"] == 0 || it["UNSEEN"] != 0 {
			t.Fatalf("SET STATUS: %s is %v in %q", name, it, st)
		}
		if _, hms := it["HIGHESTMODSEQ"]; hms {
			t.Fatalf("HIGHESTMODSEQ without CONDSTORE: %q", st)
		}
	}
	if _, ok := got["Archive"]; ok {
		t.Fatalf("SET STATUS includes the selected mailbox: %q", st)
	}

	// Section 5.2: a message delivered to another mailbox gives STATUS
	// with MESSAGES and UIDNEXT, to a client in IDLE.
	a.idle()
	notifyDeliver(c, user, "one")
	lines := a.waitLine("* STATUS INBOX ")
	if _, it := statusItems(lines[len(lines)-1]); it["MESSAGES"] != 1 || it["UNSEEN"] != 1 || it["UIDNEXT"] != got["INBOX"]["UIDNEXT"]+1 {
		t.Fatalf("after delivery: %q", lines)
	}
	a.done()

	// Section 3.1: notifications come "even when no command is in
	// progress": an APPEND through the other pod.
	b.appendMsg("Sent", "sent one")
	lines = a.waitLine(`* STATUS "Sent" `)
	if _, it := statusItems(lines[len(lines)-1]); it["MESSAGES"] != 1 {
		t.Fatalf("after APPEND to Sent: %q", lines)
	}

	// Section 5.1: a flag change in another mailbox gives STATUS.
	b.expect("SELECT INBOX", "OK")
	b.expect(`STORE 1 +FLAGS (\Seen)`, "OK")
	lines = a.waitLine("* STATUS INBOX ")
	if _, it := statusItems(lines[len(lines)-1]); it["MESSAGES"] != 1 || it["UNSEEN"] != 0 {
		t.Fatalf("after \\Seen: %q", lines)
	}

	// Section 5.3: an expunge in another mailbox gives STATUS.
	b.expect(`STORE 1 +FLAGS (\Deleted)`, "OK")
	lines = a.waitLine("* STATUS INBOX ")
	b.expect("EXPUNGE", "OK")
	lines = a.waitLine("* STATUS INBOX ")
	if _, it := statusItems(lines[len(lines)-1]); it["MESSAGES"] != 0 {
		t.Fatalf("after EXPUNGE: %q", lines)
	}

	// Section 5.4: "* LIST () "/" name" for a new mailbox, OLDNAME for a
	// rename, \NonExistent for a deleted one.
	b.expect("CREATE Lists", "OK")
	a.waitFor("LIST of the new mailbox", 15*time.Second, func(l string) bool { return l == `* LIST () "/" "Lists"` })
	b.expect("RENAME Lists Projects", "OK")
	a.waitFor("LIST with OLDNAME", 15*time.Second, func(l string) bool { return l == `* LIST () "/" "Projects" ("OLDNAME" ("Lists"))` })
	// Section 5.5: SUBSCRIBE and UNSUBSCRIBE give LIST with and without
	// \Subscribed.
	b.expect("UNSUBSCRIBE Projects", "OK")
	a.waitFor("LIST after UNSUBSCRIBE", 15*time.Second, func(l string) bool { return l == `* LIST () "/" "Projects"` })
	b.expect("SUBSCRIBE Projects", "OK")
	a.waitFor("LIST after SUBSCRIBE", 15*time.Second, func(l string) bool { return l == `* LIST (\Subscribed) "/" "Projects"` })
	// In IDLE too.
	a.idle()
	b.expect("DELETE Projects", "OK")
	a.waitFor("LIST of the deleted mailbox", 15*time.Second, func(l string) bool { return l == `* LIST (\NonExistent) "/" "Projects"` })
	a.done()

	// Section 5.1: with CONDSTORE enabled, STATUS carries HIGHESTMODSEQ.
	a.expect("ENABLE CONDSTORE", "OK")
	b.appendMsg("Drafts", "draft")
	lines = a.waitLine(`* STATUS "Drafts" `)
	if _, it := statusItems(lines[len(lines)-1]); it["HIGHESTMODSEQ"] == 0 || it["MESSAGES"] != 1 {
		t.Fatalf("STATUS after ENABLE CONDSTORE: %q", lines)
	}

	// Section 6: only the mailboxes of the filters. MAILBOXES names Trash
	// alone; a delivery to INBOX is not told, a message in Trash is.
	a.expect("NOTIFY SET (MAILBOXES Trash (MessageNew MessageExpunge))", "OK")
	notifyDeliver(c, user, "two")
	b.appendMsg("Trash", "trash")
	lines = a.waitLine(`* STATUS "Trash" `)
	if contains(lines, "INBOX") {
		t.Fatalf("INBOX told outside the filter: %q", lines)
	}
	// SUBTREE names a mailbox and its children; Events NONE none.
	b.expect("CREATE Work/Plans", "OK")
	a.expect("NOTIFY SET (SUBTREE Work (MessageNew MessageExpunge MailboxName)) (PERSONAL NONE)", "OK")
	b.appendMsg("Junk", "junk")
	b.appendMsg("Work/Plans", "plan")
	lines = a.waitLine(`* STATUS "Work/Plans" `)
	if contains(lines, "Junk") {
		t.Fatalf("Junk told outside the filter: %q", lines)
	}

	// Section 3.1: "NOTIFY NONE ... the client is not interested in
	// receiving any events": nothing more comes.
	a.expect("NOTIFY NONE", "OK")
	notifyDeliver(c, user, "three")
	b.appendMsg("Work/Plans", "plan 2")
	a.quiet(2 * time.Second)
	if noop := a.expect("NOOP", "OK"); contains(noop, "STATUS") {
		t.Fatalf("STATUS after NOTIFY NONE: %q", noop)
	}
}

// The selected mailbox: sections 5.2, 5.3 and 6.1/6.2 (SELECTED,
// SELECTED-DELAYED, NONE), changes through the other pod.
func TestIMAPNotifySelected(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	const user = "nf2@example.test"
	c.CreateAccount(user, "nf2-secret")
	for i := 0; i < 3; i++ {
		notifyDeliver(c, user, fmt.Sprintf("m%d", i))
	}
	a := csLogin(t, c, 0, user, "nf2-secret")
	b := csLogin(t, c, 1, user, "nf2-secret")
	a.expect("SELECT INBOX", "OK")
	b.expect("SELECT INBOX", "OK")

	// Section 5.2: EXISTS for a new message of the selected mailbox, then
	// FETCH of the fetch-att list, with no command in progress; no
	// STATUS for the selected mailbox.
	a.expect("NOTIFY SET (SELECTED (MessageNew (UID FLAGS ENVELOPE) MessageExpunge FlagChange)) (PERSONAL (MessageNew MessageExpunge))", "OK")
	b.appendMsg("INBOX", "pushed")
	lines := a.waitLine("* 4 FETCH ")
	if !contains(lines, "* 4 EXISTS") || !strings.Contains(lines[len(lines)-1], `"pushed"`) || !strings.Contains(lines[len(lines)-1], "UID 4") || contains(lines, "STATUS") {
		t.Fatalf("new message: %q", lines)
	}
	// Section 5.1: FETCH FLAGS for a flag change, with UID.
	b.expect(`STORE 2 +FLAGS (\Flagged)`, "OK")
	lines = a.waitLine("* 2 FETCH ")
	if !strings.Contains(lines[len(lines)-1], `\Flagged`) || !strings.Contains(lines[len(lines)-1], "UID 2") {
		t.Fatalf("flag change: %q", lines)
	}
	// Section 6.1 (selected): expunges are told at once.
	b.expect(`STORE 1 +FLAGS (\Deleted)`, "OK")
	a.waitLine("* 1 FETCH ")
	b.expect("EXPUNGE", "OK")
	a.waitLine("* 1 EXPUNGE")

	// Without FlagChange, no FETCH for flag changes (section 5.1); the
	// next STATUS of another mailbox marks the point where it would be.
	a.expect("NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (PERSONAL (MessageNew MessageExpunge))", "OK")
	b.expect(`STORE 1 +FLAGS (\Answered)`, "OK")
	b.appendMsg("Sent", "marker 1")
	lines = a.waitLine(`* STATUS "Sent" `)
	if contains(lines, "FETCH") {
		t.Fatalf("FETCH without FlagChange: %q", lines)
	}

	// Section 6.2 (selected-delayed): the arrival is told at once, the
	// expunge waits for a command that may report it.
	a.expect("NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge FlagChange)) (PERSONAL (MessageNew MessageExpunge))", "OK")
	b.expect(`STORE 1 +FLAGS (\Deleted)`, "OK")
	a.waitLine("* 1 FETCH ")
	b.expect("EXPUNGE", "OK")
	b.appendMsg("INBOX", "delayed")
	lines = a.waitLine("* 4 EXISTS")
	if contains(lines, "EXPUNGE") {
		t.Fatalf("selected-delayed told the expunge with no command: %q", lines)
	}
	if noop := a.expect("NOOP", "OK"); !contains(noop, "* 1 EXPUNGE") {
		t.Fatalf("NOOP after selected-delayed: %q", noop)
	}

	// (SELECTED NONE): nothing of the selected mailbox while it listens
	// or idles; the other mailboxes still are told. The STATUS of Sent
	// comes after what an EXISTS would have been.
	a.expect("NOTIFY SET (SELECTED NONE) (PERSONAL (MessageNew MessageExpunge))", "OK")
	a.idle()
	b.appendMsg("INBOX", "unseen by a")
	b.appendMsg("Sent", "marker 2")
	lines = a.waitLine(`* STATUS "Sent" `)
	if contains(lines, "EXISTS") {
		t.Fatalf("(SELECTED NONE) told an arrival in IDLE: %q", lines)
	}
	if d := a.done(); contains(d, "EXISTS") {
		t.Fatalf("(SELECTED NONE) told an arrival at DONE: %q", d)
	}
	// A command still brings the view up to date (RFC 9051 7.5.1).
	if noop := a.expect("NOOP", "OK"); !contains(noop, "* 4 EXISTS") {
		t.Fatalf("NOOP after (SELECTED NONE): %q", noop)
	}

	// Without a selected filter the selected mailbox is as without NOTIFY:
	// EXISTS in IDLE (RFC 2177), none between commands.
	a.expect("NOTIFY SET (PERSONAL (MessageNew MessageExpunge))", "OK")
	b.appendMsg("INBOX", "plain")
	b.appendMsg("Sent", "marker 3")
	lines = a.waitLine(`* STATUS "Sent" `)
	if contains(lines, "EXISTS") {
		t.Fatalf("EXISTS between commands without a selected filter: %q", lines)
	}
	a.idle()
	a.waitLine("* 5 EXISTS")
	a.done()
}

// Several NOTIFY clients across both pods while others deliver, append,
// flag and expunge in several mailboxes: each ends with the last STATUS it
// was told of every mailbox equal to a STATUS command's.
func TestIMAPNotifyConcurrent(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	const user, pass = "nf3@example.test", "nf3-secret"
	c.CreateAccount(user, pass)
	mailboxes := []string{"INBOX", "Archive", "Sent", "Trash"}

	const listeners = 4
	var ls []*rawIMAP
	for i := 0; i < listeners; i++ {
		r := csLogin(t, c, i%2, user, pass)
		if i == 3 {
			r.expect("SELECT Junk", "OK") // one with a mailbox selected
		}
		r.expect("NOTIFY SET (PERSONAL (MessageNew MessageExpunge FlagChange))", "OK")
		if i%2 == 1 {
			r.idle() // half of them idle, half listen between commands
		}
		ls = append(ls, r)
	}

	// Listener 0 stays in a command (an APPEND waiting for its literal)
	// while the others write: its notifications pile up meanwhile, and what
	// it is told afterwards must be the latest of each mailbox.
	hold := ls[0]
	hold.n++
	holdTag := fmt.Sprintf("t%d ", hold.n)
	hold.send(holdTag + "APPEND Junk {5}")
	hold.waitLine("+ ")

	// Writers: one per pod, each appending, flagging and expunging in
	// every mailbox but INBOX; deliveries to INBOX beside them.
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rawDial(t, c.Access[w].IMAPS, true)
			if _, st := r.do(fmt.Sprintf("LOGIN %s %s", user, pass)); !strings.HasPrefix(st, "OK") {
				errs <- "login: " + st
				return
			}
			own := []string{"Archive", "Trash"}[w] // expunged by this writer only
			for i := 0; i < 12; i++ {
				mb := []string{own, "Sent"}[i%2]
				msg := fmt.Sprintf("Subject: w%d-%d\r\n\r\nx\r\n", w, i)
				steps := []string{
					fmt.Sprintf("APPEND %s {%d+}\r\n%s", mb, len(msg), msg),
					"SELECT " + mb,
					`STORE 1:* +FLAGS (\Seen)`,
				}
				if mb == own && i%4 == 2 {
					steps = append(steps, `STORE 1 +FLAGS (\Deleted)`, "EXPUNGE")
				}
				steps = append(steps, "UNSELECT")
				for _, s := range steps {
					if _, st := r.do(s); !strings.HasPrefix(st, "OK") {
						errs <- fmt.Sprintf("%s: %s", s, st)
						return
					}
				}
			}
		}(w)
	}
	for i := 0; i < 8; i++ {
		notifyDeliver(c, user, fmt.Sprintf("delivered %d", i))
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}

	check := csLogin(t, c, 0, user, pass)
	want := map[string]map[string]uint64{}
	for _, mb := range mailboxes {
		want[mb] = statusOf(t, check, mb, "MESSAGES UIDNEXT UIDVALIDITY UNSEEN")
	}
	if want["INBOX"]["MESSAGES"] != 8 || want["Archive"]["UIDNEXT"] < 2 {
		t.Fatalf("the writers did not write: %v", want)
	}
	last := make([]map[string]map[string]uint64, len(ls))
	for i := range ls {
		last[i] = map[string]map[string]uint64{}
	}
	track := func(i int, l string) {
		if name, items := statusItems(l); name != "" {
			last[i][name] = items
		}
	}
	hold.send("hello")
	hold.waitFor("APPEND's OK", 15*time.Second, func(l string) bool {
		track(0, l)
		return strings.HasPrefix(l, holdTag+"OK")
	})
	for i, r := range ls {
		last := last[i]
		equal := func() bool {
			for _, mb := range mailboxes {
				for k, v := range want[mb] {
					if last[mb] == nil || last[mb][k] != v {
						return false
					}
				}
			}
			return true
		}
		if !equal() {
			r.waitFor(fmt.Sprintf("listener %d's STATUS to match %v", i, want), 20*time.Second, func(l string) bool {
				track(i, l)
				return equal()
			})
		}
		if i%2 == 1 {
			r.done()
		}
		// The final STATUS command agrees with what it was told.
		for _, mb := range mailboxes {
			if got := statusOf(t, r, mb, "MESSAGES UIDNEXT UIDVALIDITY UNSEEN"); fmt.Sprint(got) != fmt.Sprint(last[mb]) {
				t.Fatalf("listener %d: %s told %v, STATUS says %v", i, mb, last[mb], got)
			}
		}
	}
}

// Under COMPRESS=DEFLATE (RFC 4978) the notifications between commands
// arrive whole and flushed, and commands still run between them.
func TestIMAPNotifyCompressed(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	const user = "nf4@example.test"
	c.CreateAccount(user, "nf4-secret")
	r := csLogin(t, c, 0, user, "nf4-secret")
	r.compress()
	r.expect("SELECT Archive", "OK")
	r.expect("NOTIFY SET (INBOXES (MessageNew MessageExpunge))", "OK")
	for i := 1; i <= 3; i++ {
		notifyDeliver(c, user, fmt.Sprintf("z%d", i))
		lines := r.waitLine("* STATUS INBOX ")
		if _, it := statusItems(lines[len(lines)-1]); it["MESSAGES"] != uint64(i) {
			t.Fatalf("delivery %d: %q", i, lines)
		}
		r.expect("NOOP", "OK")
	}
}

// RFC 5465 section 5: "The server SHOULD omit notifying the client if the
// event is caused by this client." A's own CREATE, (UN)SUBSCRIBE, RENAME,
// APPEND and DELETE are not told to it; B's CREATE, after them, is.
func TestIMAPNotifyOwnChanges(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	const user = "nf5@example.test"
	c.CreateAccount(user, "nf5-secret")
	a := csLogin(t, c, 0, user, "nf5-secret")
	b := csLogin(t, c, 1, user, "nf5-secret")
	a.expect("NOTIFY SET (PERSONAL (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))", "OK")
	var told []string
	for _, cmd := range []string{"CREATE Own", "UNSUBSCRIBE Own", "SUBSCRIBE Own", "RENAME Own Own2", "", "DELETE Own2"} {
		if cmd == "" {
			a.appendMsg("Own2", "own")
			continue
		}
		told = append(told, a.expect(cmd, "OK")...)
	}
	b.expect("CREATE Marker", "OK")
	told = append(told, a.waitFor("B's CREATE", 15*time.Second, func(l string) bool { return l == `* LIST () "/" "Marker"` })...)
	if contains(told, "Own") {
		t.Fatalf("own changes told: %q", told)
	}
}
