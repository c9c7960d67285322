// Package tlsaccept serves implicit TLS (IMAPS, POP3S, SMTPS) with the
// handshake bounded in time. crypto/tls's own listener hands out a
// connection before its handshake, which then runs under whatever read
// deadlines the protocol server sets per read: a client that sends one byte
// every few seconds, or nothing, holds the connection (and its slot under
// the per-address limit) for as long as it likes. Here every handshake runs
// in its own goroutine with one deadline for the whole of it, and Accept
// returns only connections whose handshake completed.
package tlsaccept

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// DefaultTimeout is how long a client gets for the whole TLS handshake.
const DefaultTimeout = 30 * time.Second

// Listener accepts TLS connections whose handshake finished in time.
type Listener struct {
	inner   net.Listener
	config  *tls.Config
	timeout time.Duration
	// OnHandshakeError, if set, is told of each handshake that failed or
	// timed out (for metrics and debug logs).
	OnHandshakeError func(remote net.Addr, err error)

	ready     chan *tls.Conn
	done      chan struct{}
	startOnce sync.Once // the accept loop starts with the first Accept
	closeOnce sync.Once
	mu        sync.Mutex
	acceptErr error // why the accept loop ended, unless Close ended it
}

// NewListener wraps inner: its connections are TLS servers with config,
// each given timeout (DefaultTimeout if 0) to complete the handshake.
func NewListener(inner net.Listener, config *tls.Config, timeout time.Duration) *Listener {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	l := &Listener{inner: inner, config: config, timeout: timeout,
		ready: make(chan *tls.Conn), done: make(chan struct{})}
	return l
}

func (l *Listener) acceptLoop() {
	for {
		raw, err := l.inner.Accept()
		if err != nil {
			l.mu.Lock()
			select {
			case <-l.done: // closed by Close: report net.ErrClosed
			default:
				l.acceptErr = err
			}
			l.mu.Unlock()
			l.Close()
			return
		}
		go l.handshake(raw)
	}
}

// handshake completes one handshake within the timeout and hands the
// connection to Accept, or closes it.
func (l *Listener) handshake(raw net.Conn) {
	conn := tls.Server(raw, l.config)
	raw.SetDeadline(time.Now().Add(l.timeout))
	if err := conn.Handshake(); err != nil {
		if l.OnHandshakeError != nil {
			l.OnHandshakeError(raw.RemoteAddr(), err)
		}
		conn.Close()
		return
	}
	raw.SetDeadline(time.Time{}) // the protocol server sets its own from here
	select {
	case l.ready <- conn:
	case <-l.done:
		conn.Close()
	}
}

// Accept returns the next connection whose handshake completed.
func (l *Listener) Accept() (net.Conn, error) {
	l.startOnce.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.acceptErr != nil {
			return nil, l.acceptErr
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting; handshakes in flight are closed as they finish.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.mu.Lock()
		close(l.done)
		l.mu.Unlock()
		err = l.inner.Close()
	})
	return err
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }
