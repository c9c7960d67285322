// Package timeoutconn makes a read timeout final. A protocol server that
// reads lines through bufio (go-smtp does, through net/textproto) gets a
// line that was still incomplete when its read deadline passed as if it were
// whole: bufio.Reader.ReadLine returns the bytes it has with a nil error.
// The server then runs that fragment as a command and sets a fresh deadline
// for the next line, so a client dripping one byte at a time is never timed
// out. Behind this wrapper, once a read has timed out every later read
// times out at once, and the server can ask whether it happened before it
// acts on a command.
package timeoutconn

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync/atomic"
)

// Conn is a connection whose first read timeout is final.
type Conn struct {
	net.Conn
	timedOut atomic.Bool
}

// Read reads from the connection, or fails with a timeout once one read
// has timed out.
func (c *Conn) Read(p []byte) (int, error) {
	if c.timedOut.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	n, err := c.Conn.Read(p)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.timedOut.Store(true)
	}
	return n, err
}

// TimedOut reports whether a read on the connection has timed out.
func (c *Conn) TimedOut() bool { return c.timedOut.Load() }

// TimedOut reports whether conn, or the connection under it if it is TLS,
// is a Conn whose read has timed out.
func TimedOut(conn net.Conn) bool {
	if t, ok := conn.(*tls.Conn); ok {
		conn = t.NetConn()
	}
	c, ok := conn.(*Conn)
	return ok && c.TimedOut()
}

// Listener wraps every accepted connection in a Conn.
type Listener struct{ net.Listener }

// Accept returns the next connection, wrapped.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c}, nil
}
