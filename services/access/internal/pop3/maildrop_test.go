package pop3

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestTransaction(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.implicit, true)
	c.login("alice@example.test", "secret")
	// Sizes count bare LFs as CRLF: message 2 is served with 5 CRLFs.
	m1 := "From: a@example.org\r\nSubject: one\r\n\r\nhello\r\n.starts with a dot\r\nlast\r\n"
	m2size := len("Subject: two\n\nbare\nLF\nlines\n") + 5
	c.do("STAT", fmt.Sprintf("+OK 2 %d", len(m1)+m2size))
	c.do("LIST", "+OK 2 messages")
	if l, _ := c.lines(); len(l) != 2 || l[0] != fmt.Sprintf("1 %d", len(m1)) || l[1] != fmt.Sprintf("2 %d", m2size) {
		t.Fatalf("LIST = %v", l)
	}
	c.do("LIST 2", fmt.Sprintf("+OK 2 %d", m2size))
	c.do("LIST 3", "-ERR no such message")
	c.do("LIST x", "-ERR no such message")
	c.do("UIDL", "+OK")
	if l, _ := c.lines(); len(l) != 2 || l[0] != "1 uid-1" {
		t.Fatalf("UIDL = %v", l)
	}
	// RETR: CRLF line endings and dot-stuffing on the wire.
	c.do("RETR 1", fmt.Sprintf("+OK %d octets", len(m1)))
	lines, raw := c.lines()
	if strings.Join(lines, "\r\n")+"\r\n" != m1 || raw[4] != "..starts with a dot" {
		t.Fatalf("RETR 1 = %q (raw %q)", lines, raw)
	}
	c.send("RETR 2")
	c.expect("+OK")
	var got []byte
	for {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == ".\r\n" {
			break
		}
		got = append(got, l...)
	}
	if string(got) != "Subject: two\r\n\r\nbare\r\nLF\r\nlines\r\n" || len(got) != m2size {
		t.Fatalf("RETR 2 = %q", got)
	}
	// TOP: header, blank line, n lines.
	c.do("TOP 1 1", "+OK")
	if l, _ := c.lines(); strings.Join(l, "|") != "From: a@example.org|Subject: one||hello" {
		t.Fatalf("TOP 1 1 = %q", l)
	}
	c.do("TOP 2 0", "+OK")
	if l, _ := c.lines(); strings.Join(l, "|") != "Subject: two|" {
		t.Fatalf("TOP 2 0 = %q", l)
	}
	c.do("TOP 1", "-ERR")
	// DELE marks, RSET unmarks, deleted messages vanish from listings.
	c.do("DELE 1", "+OK")
	c.do("DELE 1", "-ERR message already deleted")
	c.do("RETR 1", "-ERR")
	c.do("STAT", fmt.Sprintf("+OK 1 %d", m2size))
	c.do("RSET", "+OK maildrop has 2")
	c.do("DELE 2", "+OK")
	c.do("NOOP", "+OK")
	c.do("XYZZY", "-ERR unknown command")
	if _, deleted := ts.be.state("alice@example.test"); len(deleted) != 0 {
		t.Fatal("deleted before QUIT")
	}
	c.do("QUIT", "+OK")
	c.expectClosed()
	locked, deleted := ts.be.state("alice@example.test")
	if locked || len(deleted) != 1 || deleted[0] != 1 {
		t.Fatalf("after QUIT: locked %v deleted %v, want unlocked and index 1 deleted", locked, deleted)
	}
}

func TestDroppedConnectionDeletesNothing(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.implicit, true)
	c.login("alice@example.test", "secret")
	c.do("DELE 1", "+OK")
	c.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		locked, deleted := ts.be.state("alice@example.test")
		if len(deleted) != 0 {
			t.Fatal("a dropped connection deleted messages")
		}
		if !locked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("maildrop still locked after the connection dropped")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPipelining(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.implicit, true)
	c.login("alice@example.test", "secret")
	var batch strings.Builder
	for i := 0; i < 1000; i++ {
		batch.WriteString("NOOP\r\n")
	}
	batch.WriteString("STAT\r\n")
	c.send(strings.TrimSuffix(batch.String(), "\r\n"))
	for i := 0; i < 1000; i++ {
		c.expect("+OK")
	}
	c.expect("+OK 2 ")
}

func TestShutdownAppliesNoDeletions(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.implicit, true)
	c.login("alice@example.test", "secret")
	c.do("DELE 1", "+OK")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.expect("-ERR [SYS/TEMP] server shutting down")
	if locked, deleted := ts.be.state("alice@example.test"); locked || len(deleted) != 0 {
		t.Fatalf("after shutdown: locked %v deleted %v", locked, deleted)
	}
	if _, err := net.DialTimeout("tcp", ts.plain, time.Second); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestConnectionLimitPerIP(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxConnsPerIP = 2 })
	dial(t, ts.plain, false)
	dial(t, ts.plain, false)
	conn, err := net.Dial("tcp", ts.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 200)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "-ERR [SYS/TEMP] too many connections") {
		t.Fatalf("third connection got %q", buf[:n])
	}
}
