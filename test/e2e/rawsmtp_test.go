package e2e

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// rawSMTPConn speaks SMTP line by line.
type rawSMTPConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func rawSMTP(t *testing.T, addr string) *rawSMTPConn {
	t.Helper()
	return rawSMTPFrom(t, "", addr)
}

// rawSMTPFrom is rawSMTP from a given loopback source address (127.0.0.0/8
// is all local; "" = any), so that one test can be several clients.
func rawSMTPFrom(t *testing.T, source, addr string) *rawSMTPConn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(source)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawSMTPConn{t: t, conn: conn, r: bufio.NewReader(conn)}
	if l := c.reply(); !strings.HasPrefix(l, "220") {
		t.Fatalf("greeting %q", l)
	}
	return c
}

func (c *rawSMTPConn) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawSMTPConn) line() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// reply reads a whole (possibly multi-line) reply.
func (c *rawSMTPConn) reply() string {
	c.t.Helper()
	var lines []string
	for {
		l := c.line()
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

// cmd sends a line and checks the reply's start.
func (c *rawSMTPConn) cmd(line, want string) string {
	c.t.Helper()
	fmt.Fprintf(c.conn, "%s\r\n", line)
	r := c.reply()
	if !strings.HasPrefix(r, want) {
		c.t.Fatalf("%.60q -> %q, want %q…", line, r, want)
	}
	return r
}

// rawSMTPWithPreface connects, writes preface (a PROXY header) first, then
// reads the greeting.
func rawSMTPWithPreface(t *testing.T, addr, preface string) *rawSMTPConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.Write([]byte(preface))
	c := &rawSMTPConn{t: t, conn: conn, r: bufio.NewReader(conn)}
	if l := c.reply(); !strings.HasPrefix(l, "220") {
		t.Fatalf("greeting %q", l)
	}
	return c
}
