package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }

// pop3B is a minimal POP3 client for benchmarks.
type pop3B struct {
	b    *testing.B
	conn net.Conn
	r    *bufio.Reader
}

func pop3DialB(b *testing.B, addr string) *pop3B {
	conn, err := tls.Dial("tcp", addr, insecureTLS())
	if err != nil {
		b.Fatal(err)
	}
	p := &pop3B{b: b, conn: conn, r: bufio.NewReader(conn)}
	p.line()
	return p
}

func (p *pop3B) line() string {
	p.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	l, err := p.r.ReadString('\n')
	if err != nil {
		p.b.Fatal(err)
	}
	return l
}

func (p *pop3B) cmd(c string) string {
	fmt.Fprintf(p.conn, "%s\r\n", c)
	l := p.line()
	if !strings.HasPrefix(l, "+OK") {
		p.b.Fatalf("%s: %s", c, l)
	}
	return l
}

func (p *pop3B) retr(i int) {
	p.cmd(fmt.Sprintf("RETR %d", i))
	for p.line() != ".\r\n" {
	}
}
