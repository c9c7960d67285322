package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/test/cluster"
)

// RFC 7888 section 4: a non-synchronizing literal the server refuses is
// already on its way; its bytes must never be read as commands. An APPEND
// over the limit whose literal carries "z1 DELETE victim" used to delete
// the folder: now the server answers NO [TOOBIG], says BYE and closes, and
// the folder is still there.
func TestIMAPRefusedLiteralIsNeverRunAsCommands(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1, AccessArgs: []string{"--max-message-size", "100000"}})
	c.CreateAccount("lit@example.test", "lit-secret")
	r := rawDial(t, c.Access[0].IMAPS, true)
	r.expect("LOGIN lit@example.test lit-secret", "OK")
	r.expect("CREATE victim", "OK")
	payload := "z1 DELETE victim\r\n"
	fmt.Fprintf(r.conn, "a1 APPEND INBOX {200000+}\r\n%s", payload)
	var lines []string
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		l, err := r.r.ReadString('\n')
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the connection stayed open after: %q", lines)
			}
			break
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	all := strings.Join(lines, "\n")
	if !strings.Contains(all, "a1 NO [TOOBIG]") || !strings.Contains(all, "* BYE") || strings.Contains(all, "z1 ") {
		t.Fatalf("answer to an oversized non-synchronizing literal:\n%s", all)
	}
	// A synchronizing literal over the limit is refused before it is sent,
	// and the session goes on (RFC 9051 section 7.5).
	r2 := rawDial(t, c.Access[0].IMAPS, true)
	r2.expect("LOGIN lit@example.test lit-secret", "OK")
	r2.expect("APPEND INBOX {200000}", "NO [TOOBIG]")
	if list := r2.expect(`LIST "" "victim"`, "OK"); !contains(list, `"victim"`) {
		t.Fatalf("the folder named in the refused literal is gone: %q", list)
	}
	// A small non-synchronizing literal of a refused command is skipped,
	// not run: a RENAME missing its second name, whose literal holds a
	// command.
	fmt.Fprintf(r2.conn, "b1 RENAME {3+}\r\nabc (x {%d+}\r\n%s\r\n", len("z2 DELETE victim\r\n"), "z2 DELETE victim\r\n")
	for {
		l := r2.line()
		if strings.HasPrefix(l, "z2 ") {
			t.Fatalf("the literal ran as a command: %q", l)
		}
		if strings.HasPrefix(l, "b1 ") {
			if !strings.HasPrefix(l, "b1 BAD") {
				t.Fatalf("RENAME with a list for a name: %q, want BAD", l)
			}
			break
		}
	}
	if _, status := r2.do("NOOP"); !strings.HasPrefix(status, "OK") {
		t.Fatalf("NOOP after a refused command: %q", status)
	}
	if list := r2.expect(`LIST "" "victim"`, "OK"); !contains(list, `"victim"`) {
		t.Fatalf("the literal of a refused command ran: %q", list)
	}
}

// RFC 9051 section 7.1.5: BAD is a client error, answered at once; NO
// [SERVERBUG] only for a fault of the server. Each of these used to get NO
// [SERVERBUG] from go-imap (the unclosed quote after a 30 s wait).
func TestIMAPClientErrorsAnswerBAD(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("bad2@example.test", "bad2-secret")
	r := rawDial(t, c.Access[0].IMAPS, true)
	r.expect("LOGIN bad2@example.test bad2-secret", "OK")
	for _, cmd := range []string{
		`CREATE "abc`,                // unclosed quoted string
		`CREATE a&b`,                 // a bare & is not modified UTF-7 (RFC 3501 5.1.3)
		"CREATE \"bad\xff\xfename\"", // 8-bit in a mailbox name of an IMAP4rev1 session
		"CREATE \"a\x01b\"",          // a control character
		"SEARCH " + strings.Repeat("(", 3000) + "ALL" + strings.Repeat(")", 3000),
		"FETCH x:y (FLAGS)",
		"SELECT",
		"FETCH 1 (BODY[1.MIMEX])",
	} {
		if _, status := r.do(cmd); !strings.HasPrefix(status, "BAD") {
			t.Errorf("%.40q: %q, want BAD", cmd, status)
		}
	}
	r.expect("NOOP", "OK")
	// A 64 KB line: BAD, then the connection ends (the rest of the line
	// cannot be told from commands).
	if _, status := r.do("NOOP " + strings.Repeat("x", 70000)); !strings.HasPrefix(status, "BAD") {
		t.Errorf("64 KB line: %q, want BAD", status)
	}
}

// RFC 9051 section 7.3.5: a client records the FLAGS response; a keyword it
// was never told of in FLAGS looks "not in FLAGS" to it. When another
// session gives a message a keyword new to the mailbox, this session gets
// FLAGS (and PERMANENTFLAGS) before the FETCH that shows the keyword.
func TestIMAPNewKeywordUpdatesFLAGS(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("kw@example.test", "kw-secret")
	c.Deliver([]string{"kw@example.test"}, []byte("Subject: k\r\n\r\nx\r\n"))
	a := rawDial(t, c.Access[0].IMAPS, true)
	a.expect("LOGIN kw@example.test kw-secret", "OK")
	a.expect("SELECT INBOX", "OK")
	b := rawDial(t, c.Access[0].IMAPS, true)
	b.expect("LOGIN kw@example.test kw-secret", "OK")
	if sel := b.expect("SELECT INBOX", "OK"); contains(sel, "$Important") {
		t.Fatalf("keyword known before it exists: %q", sel)
	}
	a.expect("STORE 1 +FLAGS ($Important)", "OK")
	var updates []string
	deadline := time.Now().Add(10 * time.Second)
	for !contains(updates, "FETCH") && time.Now().Before(deadline) {
		u, _ := b.do("NOOP")
		updates = append(updates, u...)
	}
	flagsAt, fetchAt := -1, -1
	for i, u := range updates {
		switch {
		case strings.HasPrefix(u, "* FLAGS (") && strings.Contains(u, "$Important"):
			flagsAt = i
		case strings.Contains(u, "FETCH") && strings.Contains(u, "$Important"):
			fetchAt = i
		}
	}
	if flagsAt < 0 || fetchAt < 0 || flagsAt > fetchAt || !contains(updates, `[PERMANENTFLAGS (`) {
		t.Fatalf("updates after another session's new keyword: %q", updates)
	}
	// A new SELECT lists it too.
	if sel := b.expect("SELECT INBOX", "OK"); !contains(sel, "$Important") {
		t.Fatalf("SELECT after the keyword: %q", sel)
	}
	// RFC 6851 3.1: UID MOVE of UIDs that do not exist moves nothing and
	// succeeds (no COPYUID), and the session goes on.
	if u := b.expect("UID MOVE 99998:99999 Trash", "OK"); contains(u, "COPYUID") {
		t.Fatalf("empty MOVE: %q", u)
	}
	b.expect("NOOP", "OK")
}

// Transcripts of three RFC 9051 rules the go-imap server layer got wrong.
func TestIMAPMailboxStateRules(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("st@example.test", "st-secret")
	c.Deliver([]string{"st@example.test"}, []byte("Subject: s\r\n\r\nx\r\n"))
	r := rawDial(t, c.Access[0].IMAPS, true)
	r.expect("LOGIN st@example.test st-secret", "OK")
	// 6.3.9: an empty mailbox pattern asks for the hierarchy delimiter and
	// the root: * LIST (\Noselect) "/" "".
	if l := r.expect(`LIST "" ""`, "OK"); len(l) != 1 || !strings.HasPrefix(l[0], `* LIST (\Noselect) "/" `) {
		t.Fatalf(`LIST "" "": %q`, l)
	}
	// 6.4.1: CLOSE after EXAMINE closes without expunging (it used to
	// answer NO [CANNOT]).
	r.expect("SELECT INBOX", "OK")
	r.expect("STORE 1 +FLAGS (\\Deleted)", "OK")
	r.expect("EXAMINE INBOX", "OK")
	r.expect("CLOSE", "OK")
	if st := r.expect("STATUS INBOX (MESSAGES)", "OK"); !contains(st, "MESSAGES 1") {
		t.Fatalf("CLOSE after EXAMINE expunged: %q", st)
	}
	// 6.3.8: unsubscribing a name that does not exist (any more) is not an
	// error: the name is not subscribed afterwards.
	r.expect("UNSUBSCRIBE NoSuchFolder", "OK")
	r.expect("CREATE Gone", "OK")
	r.expect("DELETE Gone", "OK")
	r.expect("UNSUBSCRIBE Gone", "OK")
}

// RFC 9208 (QUOTA): the account is one quota root "" with STORAGE (KiB) and
// MESSAGE; GETQUOTAROOT names it for any mailbox (4.3.1), GETQUOTA reads
// it (4.3.2), SETQUOTA is the administrator's (mailctl), not the user's.
func TestIMAPQuota(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	acc := c.CreateAccount("q@example.test", "q-secret")
	r := rawDial(t, c.Access[0].IMAPS, true)
	if caps := r.expect("LOGIN q@example.test q-secret", "OK"); len(caps) != 0 {
		t.Fatalf("untagged after LOGIN: %q", caps)
	}
	// No limit: no quota root.
	if l := r.expect("GETQUOTAROOT INBOX", "OK"); len(l) != 1 || l[0] != "* QUOTAROOT INBOX" {
		t.Fatalf("GETQUOTAROOT without limits: %q", l)
	}
	if _, err := c.Accounts.SetQuota(context.Background(), &storagev1.SetQuotaRequest{AccountId: acc.Id, LimitBytes: 10 << 20, LimitMessages: 100}); err != nil {
		t.Fatal(err)
	}
	c.Deliver([]string{"q@example.test"}, append([]byte("Subject: q\r\n\r\n"), bytes.Repeat([]byte("x"), 3000)...))
	l := r.expect("GETQUOTAROOT INBOX", "OK")
	if len(l) != 2 || l[0] != `* QUOTAROOT INBOX ""` || !strings.HasPrefix(l[1], `* QUOTA "" (STORAGE 3 10240 MESSAGE 1 100)`) {
		t.Fatalf("GETQUOTAROOT: %q", l)
	}
	if l := r.expect(`GETQUOTA ""`, "OK"); len(l) != 1 || l[0] != `* QUOTA "" (STORAGE 3 10240 MESSAGE 1 100)` {
		t.Fatalf("GETQUOTA: %q", l)
	}
	r.expect(`GETQUOTA "other"`, "NO [NONEXISTENT]")
	r.expect("GETQUOTAROOT NoSuchBox", "NO [NONEXISTENT]")
	r.expect(`SETQUOTA "" (STORAGE 512)`, "NO [NOPERM]")
	r.expect(`SETQUOTA "" (BOGUS 512)`, "BAD")
	if caps := r.expect("CAPABILITY", "OK"); !contains(caps, "QUOTA=RES-STORAGE") || !contains(caps, "QUOTA=RES-MESSAGE") {
		t.Fatalf("CAPABILITY: %q", caps)
	}
}

// RFC 3516 section 4.2: BINARY[] of a whole message is its header as
// stored and its body with the message's own transfer encoding undone;
// BINARY.SIZE[] is that length, and a partial BINARY[]<o.n> answers with
// its origin. A multipart message has no encoding of its own to undo.
func TestIMAPBinaryWholeMessage(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("bin@example.test", "bin-secret")
	payload := []byte("binary\x00payload\r\nwith a NUL and \xff\xfe")
	header := "From: a@example.test\r\nSubject: b64\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	single := header + base64.StdEncoding.EncodeToString(payload) + "\r\n"
	multi := "Subject: mp\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n"
	cl := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, cl, "bin@example.test", "bin-secret")
	appendMsg(t, cl, "INBOX", []byte(single), nil)
	appendMsg(t, cl, "INBOX", []byte(multi), nil)
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := cl.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{
		BinarySection:     []*imap.FetchItemBinarySection{{Peek: true}},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	wants := [][]byte{append([]byte(header), payload...), []byte(multi)}
	for i, m := range msgs {
		want := wants[i]
		if len(m.BinarySection) != 1 || !bytes.Equal(m.BinarySection[0].Bytes, want) {
			t.Errorf("message %d: BINARY[] = %+v, want %q", i+1, m.BinarySection, want)
		}
		if len(m.BinarySectionSize) != 1 || m.BinarySectionSize[0].Size != uint32(len(want)) {
			t.Errorf("message %d: BINARY.SIZE[] = %+v, want %d", i+1, m.BinarySectionSize, len(want))
		}
	}
	// The partial form, over the wire (go-imap's client does not read the
	// origin RFC 9051 7.5.2 gives BINARY[]<<number>>): octets 3 to 12 of
	// the decoded message.
	r := rawDial(t, c.Access[0].IMAPS, true)
	r.expect("LOGIN bin@example.test bin-secret", "OK")
	r.expect("EXAMINE INBOX", "OK")
	fmt.Fprintf(r.conn, "p1 FETCH 1 (BINARY.PEEK[]<3.10>)\r\n")
	if l := r.line(); !strings.HasPrefix(l, "* 1 FETCH (") || !strings.HasSuffix(l, "BINARY[]<3> ~{10}") && !strings.HasSuffix(l, "BINARY[]<3> {10}") {
		t.Fatalf("BINARY[]<3.10>: %q", l)
	}
	if l := r.line(); !strings.HasPrefix(l, string(wants[0][3:13])+")") {
		t.Fatalf("BINARY[]<3.10> data: %q, want %q", l, wants[0][3:13])
	}
}
