package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/pkg/authlimit"
	"github.com/mailfleet/mailfleet/pkg/tlsreload"
)

// fakeBackend is an in-memory Backend for protocol tests. The real one, on
// the storage tier, is tested in test/integration.
type fakeBackend struct {
	mu    sync.Mutex
	users map[string]string
	drops map[string]*fakeDrop
}

type fakeDrop struct {
	be      *fakeBackend
	account string
	bodies  [][]byte
	locked  bool
	deleted []int
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{users: map[string]string{}, drops: map[string]*fakeDrop{}}
}

func (b *fakeBackend) addUser(user, pass string, bodies ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.users[user] = pass
	d := &fakeDrop{be: b, account: user}
	for _, body := range bodies {
		d.bodies = append(d.bodies, []byte(body))
	}
	b.drops[user] = d
}

func (b *fakeBackend) Authenticate(ctx context.Context, user, pass, clientIP string) (Login, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.users[user]; !ok || p != pass {
		return Login{}, ErrAuthFailed
	}
	return Login{Account: user}, nil
}

func (b *fakeBackend) Open(ctx context.Context, login Login) (Maildrop, error) {
	account := login.Account
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.drops[account]
	if d.locked {
		return nil, ErrInUse
	}
	d.locked = true
	return d, nil
}

func (d *fakeDrop) Messages() []MessageInfo {
	var out []MessageInfo
	for i, body := range d.bodies {
		n := uint64(len(body)) + uint64(bytes.Count(body, []byte("\n"))-bytes.Count(body, []byte("\r\n")))
		out = append(out, MessageInfo{UID: fmt.Sprintf("uid-%d", i+1), Size: n})
	}
	return out
}

func (d *fakeDrop) Body(ctx context.Context, i int) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(d.bodies[i])), nil
}

func (d *fakeDrop) Delete(ctx context.Context, idx []int) error {
	d.be.mu.Lock()
	defer d.be.mu.Unlock()
	d.deleted = append(d.deleted, idx...)
	return nil
}

func (d *fakeDrop) Close() error {
	d.be.mu.Lock()
	defer d.be.mu.Unlock()
	d.locked = false
	return nil
}

func (b *fakeBackend) state(user string) (locked bool, deleted []int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.drops[user]
	return d.locked, append([]int(nil), d.deleted...)
}

var testTLS = func() *tls.Config {
	dir, err := tlsDir()
	if err != nil {
		panic(err)
	}
	cert, key, err := tlsreload.SelfSigned(dir, []string{"localhost", "127.0.0.1"})
	if err != nil {
		panic(err)
	}
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		panic(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}}
}()

// testServer starts a server with a fake backend on two loopback listeners:
// plain (STLS) and implicit TLS.
type testServer struct {
	srv      *Server
	be       *fakeBackend
	plain    string
	implicit string
}

func startServer(t testing.TB, mutate func(*Config)) *testServer {
	t.Helper()
	be := newFakeBackend()
	be.addUser("alice@example.test", "secret",
		"From: a@example.org\r\nSubject: one\r\n\r\nhello\r\n.starts with a dot\r\nlast\r\n",
		"Subject: two\n\nbare\nLF\nlines\n")
	be.addUser("bob@example.test", "bobpw")
	cfg := Config{
		TLS:     testTLS,
		Limiter: authlimit.New(5, time.Minute, time.Minute, time.Millisecond),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv := NewServer(be, cfg)
	ts := &testServer{srv: srv, be: be}
	for _, implicit := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if implicit {
			ts.implicit = ln.Addr().String()
		} else {
			ts.plain = ln.Addr().String()
		}
		go srv.Serve(ln, implicit)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ts
}

// client speaks raw POP3 lines, like a transcript.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dial(t testing.TB, addr string, implicitTLS bool) *client {
	t.Helper()
	var conn net.Conn
	var err error
	if implicitTLS {
		conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.expect("+OK")
	return c
}

func (c *client) line() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading a reply: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads one reply and checks its start.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("reply %q, want %q…", l, prefix)
	}
	return l
}

// do sends a command and checks the reply's start.
func (c *client) do(cmd, prefix string) string {
	c.t.Helper()
	c.send(cmd)
	return c.expect(prefix)
}

// lines reads a multi-line body up to "." and undoes dot-stuffing; raw keeps
// the lines exactly as sent.
func (c *client) lines() (lines, raw []string) {
	c.t.Helper()
	for {
		l := c.line()
		if l == "." {
			return lines, raw
		}
		raw = append(raw, l)
		lines = append(lines, strings.TrimPrefix(l, "."))
	}
}

func (c *client) stls() {
	c.t.Helper()
	c.do("STLS", "+OK")
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

func (c *client) login(user, pass string) {
	c.t.Helper()
	c.do("USER "+user, "+OK")
	c.do("PASS "+pass, "+OK")
}

// expectClosed checks that the server hung up.
func (c *client) expectClosed() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, err := c.r.ReadString('\n'); err == nil {
		c.t.Fatalf("connection still open, got %q", l)
	}
}
