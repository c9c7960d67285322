package e2e

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// Invariant 3: a session sees and changes only its own account, whatever
// names, UIDs or sequence numbers it tries.
func TestIMAPIsolation(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("alice@example.test", "alice-secret")
	c.CreateAccount("mallory@example.test", "mallory-secret")
	c.Deliver([]string{"alice@example.test"}, []byte("Subject: private\r\n\r\nalice's secret\r\n"))
	a := rawDial(t, c.Access[0].IMAPS, true)
	a.expect("LOGIN alice@example.test alice-secret", "OK")
	a.expect("CREATE Secret", "OK")

	m := rawDial(t, c.Access[0].IMAPS, true)
	m.expect("LOGIN mallory@example.test mallory-secret", "OK")
	list := m.expect(`LIST "" "*"`, "OK")
	if contains(list, "Secret") {
		t.Fatalf("mallory lists alice's mailbox: %q", list)
	}
	for _, name := range []string{"Secret", "alice@example.test/INBOX", "../alice/INBOX", "#shared/alice"} {
		m.expect("SELECT "+quote(name), "NO")
		m.expect("STATUS "+quote(name)+" (MESSAGES)", "NO")
		m.expect("DELETE "+quote(name), "NO")
		m.expect("RENAME "+quote(name)+" Mine", "NO")
	}
	m.expect("SELECT INBOX", "OK")
	if got := m.expect("UID FETCH 1:* (BODY.PEEK[])", "OK"); len(got) != 0 {
		t.Fatalf("mallory fetched %q", got)
	}
	m.expect("UID STORE 1 +FLAGS (\\Deleted)", "OK")
	m.expect("UID EXPUNGE 1", "OK")
	// UID 1 is alice's: a UID COPY names nothing of mallory's, which copies
	// nothing (RFC 9051 6.4.9: UIDs that do not exist are no error; no
	// COPYUID), and mallory's INBOX stays empty.
	if _, st := m.do("UID COPY 1 INBOX"); !strings.HasPrefix(st, "OK") || strings.Contains(st, "COPYUID") {
		t.Fatalf("UID COPY of alice's UID: %q", st)
	}
	if got := m.expect("UID SEARCH ALL", "OK"); len(got) != 1 || strings.TrimSpace(got[0]) != "* SEARCH" {
		t.Fatalf("mallory's INBOX after UID COPY: %q", got)
	}
	if got := m.expect("SEARCH TEXT secret", "OK"); contains(got, "SEARCH 1") {
		t.Fatalf("mallory's search found alice's mail: %q", got)
	}
	// Alice's mail is untouched.
	a.expect("SELECT INBOX", "OK")
	got := a.expect("FETCH 1 (FLAGS BODY.PEEK[TEXT])", "OK")
	if !contains(got, "alice's secret") || contains(got, `\Deleted`) {
		t.Fatalf("alice's message changed: %q", got)
	}
}

func quote(s string) string { return `"` + s + `"` }

// Invariant 4: bad input gets a clear reply and harms nothing.
func TestIMAPBadInput(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1, AccessArgs: []string{"--max-message-size", "100000"}})
	c.CreateAccount("bad@example.test", "bad-secret")
	r := rawDial(t, c.Access[0].IMAPS, true)
	r.expect("LOGIN bad@example.test bad-secret", "OK")
	// A literal over APPENDLIMIT is refused before it is sent.
	r.expect("APPEND INBOX {200000}", "NO [TOOBIG]")
	// Mailbox names that are not UTF-8 or escape the hierarchy: BAD or NO
	// (TestIMAPClientErrorsAnswerBAD checks which); nothing happens and the
	// session goes on.
	refused := func(cmd string) {
		t.Helper()
		if _, status := r.do(cmd); strings.HasPrefix(status, "OK") {
			t.Fatalf("%q accepted: %q", cmd, status)
		}
	}
	refused("CREATE \"bad\xff\xfename\"")
	refused("CREATE \"../escape\"")
	refused("CREATE \"a//b\"")
	if list := r.expect(`LIST "" "*"`, "OK"); len(list) != 6 {
		t.Fatalf("bad names created mailboxes: %q", list)
	}
	// Garbage and syntax errors are refused, and the session goes on.
	refused("FETCH x:y (FLAGS)")
	r.expect("SELECT", "BAD")
	r.expect("NOOP", "OK")
	// 1000 pipelined commands all get their answer.
	var batch bytes.Buffer
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&batch, "p%d NOOP\r\n", i)
	}
	r.conn.Write(batch.Bytes())
	for i := 0; i < 1000; i++ {
		for {
			l := r.line()
			if strings.HasPrefix(l, fmt.Sprintf("p%d OK", i)) {
				break
			}
			if !strings.HasPrefix(l, "* ") {
				t.Fatalf("pipelined NOOP %d: %q", i, l)
			}
		}
	}
	// A client that stops reading harms no other session.
	for i := 0; i < 20; i++ {
		c.Deliver([]string{"bad@example.test"}, append([]byte("Subject: big\r\n\r\n"), bytes.Repeat([]byte("y"), 60000)...))
	}
	stuck := rawDial(t, c.Access[0].IMAPS, true)
	stuck.expect("LOGIN bad@example.test bad-secret", "OK")
	stuck.expect("SELECT INBOX", "OK")
	for i := 0; i < 20; i++ {
		fmt.Fprintf(stuck.conn, "s%d FETCH 1:* (BODY.PEEK[])\r\n", i)
	}
	other := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, other, "bad@example.test", "bad-secret")
	done := make(chan error, 1)
	go func() {
		_, err := other.Select("INBOX", nil).Wait()
		if err == nil {
			_, err = other.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("another session failed while one stalls: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("another session hung while one client stopped reading")
	}
}

// Over quota: APPEND gets NO [OVERQUOTA]; raising the quota lets it in.
func TestIMAPOverQuota(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	acc := c.CreateAccount("full@example.test", "full-secret")
	cl := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, cl, "full@example.test", "full-secret")
	c.SetQuota(acc.Id, 2000, 0)
	appendMsg(t, cl, "INBOX", bytes.Repeat([]byte("a"), 1500), nil)
	cmd := cl.Append("INBOX", 1000, nil)
	cmd.Write(bytes.Repeat([]byte("b"), 1000))
	cmd.Close()
	if _, err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "OVERQUOTA") {
		t.Fatalf("append over quota: %v, want NO [OVERQUOTA]", err)
	}
	c.SetQuota(acc.Id, 0, 0)
	appendMsg(t, cl, "INBOX", bytes.Repeat([]byte("b"), 1000), nil)
}

// SIGTERM: every IMAP client is told BYE, so it reconnects to another pod.
func TestIMAPShutdownSaysBye(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("bye@example.test", "bye-secret")
	r := rawDial(t, c.Access[0].IMAPS, true)
	r.expect("LOGIN bye@example.test bye-secret", "OK")
	r.expect("SELECT INBOX", "OK")
	fmt.Fprintf(r.conn, "i1 IDLE\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	go c.Access[0].Signal(syscall.SIGTERM)
	for {
		l := r.line()
		if strings.HasPrefix(l, "* BYE") {
			break
		}
	}
	if !r.closed() {
		t.Fatal("connection open after BYE")
	}
}

// Connection limits: per client address, and sessions per account.
func TestIMAPConnectionLimits(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1,
		AccessArgs: []string{"--max-conns-per-ip", "3", "--max-sessions-per-account", "1"}})
	c.CreateAccount("lim@example.test", "lim-secret")
	first := rawDial(t, c.Access[0].IMAPS, true)
	first.expect("LOGIN lim@example.test lim-secret", "OK")
	second := rawDial(t, c.Access[0].IMAPS, true)
	second.expect("LOGIN lim@example.test lim-secret", "NO [LIMIT]")
	rawDial(t, c.Access[0].IMAPS, true)
	// The limit counts every listener; the plaintext port shows the refusal.
	conn, err := net.Dial("tcp", c.Access[0].IMAP)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 100)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "* BYE Too many connections") {
		t.Fatalf("fourth connection from one address got %q", buf[:n])
	}
	// Logging out frees the account's session slot.
	first.expect("LOGOUT", "OK")
	time.Sleep(200 * time.Millisecond)
	second.expect("LOGIN lim@example.test lim-secret", "OK")
}
