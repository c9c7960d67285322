package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// pop3Conn is a raw POP3 client over implicit TLS.
type pop3Conn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func pop3Dial(t *testing.T, addr string) *pop3Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &pop3Conn{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.expect("+OK")
	return c
}

func (c *pop3Conn) expect(prefix string) string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	l = strings.TrimRight(l, "\r\n")
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want %q…", l, prefix)
	}
	return l
}

func (c *pop3Conn) do(cmd, prefix string) string {
	c.t.Helper()
	fmt.Fprintf(c.conn, "%s\r\n", cmd)
	return c.expect(prefix)
}

func (c *pop3Conn) lines() []string {
	c.t.Helper()
	var out []string
	for {
		l := c.expect("")
		if l == "." {
			return out
		}
		out = append(out, strings.TrimPrefix(l, "."))
	}
}

func message(n int) []byte {
	return []byte(fmt.Sprintf("From: s%d@example.org\r\nTo: pop@example.test\r\nSubject: pop %d\r\n\r\nbody %d\r\n.dot line\r\n", n, n, n))
}

// POP3 across two access pods: UIDL agrees, the maildrop is locked
// cluster-wide, DELE+QUIT expunges, a dropped session deletes nothing, and a
// killed pod's lock expires.
func TestPOP3AcrossPods(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Storage: 2, Access: 2, AccessArgs: []string{"--pop3-lock-ttl", "3s"}})
	acc := c.CreateAccount("pop@example.test", "pop-secret")
	for i := 1; i <= 3; i++ {
		c.Deliver([]string{"pop@example.test"}, message(i))
	}

	a := pop3Dial(t, c.Access[0].POP3S)
	a.do("USER pop@example.test", "+OK")
	a.do("PASS pop-secret", "+OK maildrop has 3 messages")
	a.do("UIDL", "+OK")
	uidlA := a.lines()
	// A second session on the other pod is refused while the first holds the maildrop.
	b := pop3Dial(t, c.Access[1].POP3S)
	b.do("USER pop@example.test", "+OK")
	b.do("PASS pop-secret", "-ERR [IN-USE]")
	// DELE then a dropped connection: nothing is deleted, the lock is released.
	a.do("DELE 1", "+OK")
	a.conn.Close()
	var b2 *pop3Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		b2 = pop3Dial(t, c.Access[1].POP3S)
		b2.do("USER pop@example.test", "+OK")
		fmt.Fprintf(b2.conn, "PASS pop-secret\r\n")
		if l := b2.expect(""); strings.HasPrefix(l, "+OK maildrop has 3 messages") {
			break
		} else if !strings.Contains(l, "IN-USE") || time.Now().After(deadline) {
			t.Fatalf("after a dropped session: %q", l)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b2.do("UIDL", "+OK")
	if uidlB := b2.lines(); strings.Join(uidlB, ",") != strings.Join(uidlA, ",") {
		t.Fatalf("UIDL differs across pods: %v vs %v", uidlA, uidlB)
	}
	// RETR returns the delivered bytes (dot-stuffing undone).
	b2.do("RETR 2", "+OK")
	if got := strings.Join(b2.lines(), "\r\n") + "\r\n"; got != string(message(2)) {
		t.Fatalf("RETR 2 = %q", got)
	}
	// DELE + QUIT expunges for good: an IMAP session selected on the other
	// pod is told, and the INBOX holds only UID 2.
	ev := newEvents()
	im := dialIMAP(t, c.Access[0].IMAPS, ev)
	login(t, im, "pop@example.test", "pop-secret")
	if _, err := im.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := im.Idle()
	if err != nil {
		t.Fatal(err)
	}
	b2.do("DELE 1", "+OK")
	b2.do("DELE 3", "+OK")
	b2.do("QUIT", "+OK")
	ev.waitFor(t, "two EXPUNGEs over IMAP", 5*time.Second, func(e *events) bool { return len(e.expunge) == 2 })
	idle.Close()
	idle.Wait()
	msgs, err := im.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 2 {
		t.Fatalf("IMAP view after POP3 DELE 1,3 + QUIT: %v %v", msgs, err)
	}
	if uids := c.InboxUIDs(acc.Id); len(uids) != 1 || uids[0] != 2 {
		t.Fatalf("INBOX after DELE 1,3 + QUIT: %v, want [2]", uids)
	}

	// kill -9 of the pod holding the maildrop: after the lock's TTL a session
	// on the other pod gets in.
	k := pop3Dial(t, c.Access[0].POP3S)
	k.do("USER pop@example.test", "+OK")
	k.do("PASS pop-secret", "+OK")
	killed := time.Now()
	c.Access[0].Signal(syscall.SIGKILL)
	deadline = time.Now().Add(20 * time.Second)
	for {
		n := pop3Dial(t, c.Access[1].POP3S)
		n.do("USER pop@example.test", "+OK")
		fmt.Fprintf(n.conn, "PASS pop-secret\r\n")
		l := n.expect("")
		if strings.HasPrefix(l, "+OK") {
			t.Logf("maildrop free %v after kill -9", time.Since(killed).Round(100*time.Millisecond))
			n.do("STAT", "+OK 1 ")
			break
		}
		if !strings.Contains(l, "IN-USE") || time.Now().After(deadline) {
			t.Fatalf("after kill -9 of the lock holder: %q", l)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
