package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// rawIMAP speaks IMAP line by line, for what a library client will not send.
type rawIMAP struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	n    int
}

func rawDial(t *testing.T, addr string, implicitTLS bool) *rawIMAP {
	t.Helper()
	return rawDialFrom(t, "", addr, implicitTLS)
}

// rawDialFrom dials from a given loopback source address (127.0.0.0/8 is
// all local), so that a test can be several clients ("" = any).
func rawDialFrom(t *testing.T, source, addr string, implicitTLS bool) *rawIMAP {
	t.Helper()
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	if source != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(source)}
	}
	var conn net.Conn
	var err error
	if implicitTLS {
		conn, err = tls.DialWithDialer(dialer, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		conn, err = dialer.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawIMAP{t: t, conn: conn, r: bufio.NewReader(conn)}
	if l := c.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q", l)
	}
	return c
}

func (c *rawIMAP) line() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (after %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// do sends a command and returns the untagged lines and the tagged status line.
func (c *rawIMAP) do(cmd string) (untagged []string, status string) {
	c.t.Helper()
	c.n++
	return c.tagged(fmt.Sprintf("t%d", c.n), cmd)
}

// tagged is do with a tag of the caller's (RFC 5267 correlates search
// updates by tag, so its tests choose them).
func (c *rawIMAP) tagged(tag, cmd string) (untagged []string, status string) {
	c.t.Helper()
	fmt.Fprintf(c.conn, "%s %s\r\n", tag, cmd)
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, strings.TrimPrefix(l, tag+" ")
		}
		untagged = append(untagged, l)
	}
}

// expect runs cmd and checks the tagged status starts with want.
func (c *rawIMAP) expect(cmd, want string) []string {
	c.t.Helper()
	c.n++
	return c.expectTagged(fmt.Sprintf("t%d", c.n), cmd, want)
}

// expectTagged is expect with a tag of the caller's.
func (c *rawIMAP) expectTagged(tag, cmd, want string) []string {
	c.t.Helper()
	untagged, status := c.tagged(tag, cmd)
	if !strings.HasPrefix(status, want) {
		c.t.Fatalf("%s %s -> %q (untagged %q), want %q…", tag, cmd, status, untagged, want)
	}
	return untagged
}

func (c *rawIMAP) starttls() {
	c.t.Helper()
	c.expect("STARTTLS", "OK")
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

// closed reports whether the server hangs up within a few seconds (replies
// sent before that are skipped).
func (c *rawIMAP) closed() bool {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := c.r.ReadString('\n'); err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
