package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailfleet/mailfleet/pkg/authlimit"
)

// Config tunes the server. Zero values take the defaults noted.
type Config struct {
	// TLS enables STLS and port 995; nil disables both.
	TLS *tls.Config
	// AllowInsecureAuth permits USER/PASS/AUTH without TLS (development only).
	AllowInsecureAuth bool
	// IdleTimeout is the autologout timer (RFC 1939 asks for at least 10 minutes).
	IdleTimeout time.Duration
	// MaxLineLength bounds a command line (default 1024; RFC 2449 allows 255).
	MaxLineLength int
	// MaxBadCommands unknown commands before login close the connection (default 3).
	MaxBadCommands int
	// MaxConnsPerIP bounds concurrent connections from one address (default 20).
	MaxConnsPerIP int
	// MaxConns bounds concurrent connections in total (0: no bound).
	MaxConns int
	// Limiter throttles failed logins (default: 10 in 5 min → 15 min lockout, 1 s delay).
	Limiter *authlimit.Limiter
	// Observer receives events for metrics (optional).
	Observer Observer
	Logger   *slog.Logger
}

// Observer is told about connections, logins and commands (for metrics).
type Observer interface {
	Connection()
	Login(result string)
	Command(name string, ok bool, d time.Duration)
}

type nopObserver struct{}

func (nopObserver) Connection()                         {}
func (nopObserver) Login(string)                        {}
func (nopObserver) Command(string, bool, time.Duration) {}

// Server serves POP3 on any number of listeners.
type Server struct {
	cfg     Config
	backend Backend

	mu        sync.Mutex
	listeners map[net.Listener]bool
	sessions  map[*session]bool
	perIP     map[string]int
	closing   bool
	wg        sync.WaitGroup
	nextID    atomic.Uint64
}

// NewServer returns a server; call Serve for each listener.
func NewServer(backend Backend, cfg Config) *Server {
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.MaxLineLength == 0 {
		cfg.MaxLineLength = 1024
	}
	if cfg.MaxBadCommands == 0 {
		cfg.MaxBadCommands = 3
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = 20
	}
	if cfg.Limiter == nil {
		cfg.Limiter = authlimit.New(10, 5*time.Minute, 15*time.Minute, time.Second)
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, backend: backend, listeners: map[net.Listener]bool{}, sessions: map[*session]bool{}, perIP: map[string]int{}}
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("pop3: server closed")

// Serve accepts connections on ln until Shutdown. With implicitTLS (port 995)
// every connection starts with a TLS handshake.
func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	if implicitTLS && s.cfg.TLS == nil {
		return errors.New("pop3: implicit TLS needs a TLS config")
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = true
	s.mu.Unlock()
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return err
		}
		s.cfg.Observer.Connection()
		ip := remoteIP(conn)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			conn.Close()
			return ErrServerClosed
		}
		if s.cfg.MaxConns > 0 && len(s.sessions) >= s.cfg.MaxConns {
			s.mu.Unlock()
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			conn.Write([]byte("-ERR [SYS/TEMP] server busy, try later\r\n"))
			conn.Close()
			continue
		}
		if s.perIP[ip] >= s.cfg.MaxConnsPerIP {
			s.mu.Unlock()
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			conn.Write([]byte("-ERR [SYS/TEMP] too many connections from your address\r\n"))
			conn.Close()
			continue
		}
		s.perIP[ip]++
		sess := newSession(s, conn, ip, implicitTLS)
		s.sessions[sess] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				if r := recover(); r != nil {
					s.cfg.Logger.Error("pop3 session panicked", "conn", sess.id, "panic", r)
				}
				s.mu.Lock()
				delete(s.sessions, sess)
				s.perIP[ip]--
				if s.perIP[ip] == 0 {
					delete(s.perIP, ip)
				}
				s.mu.Unlock()
			}()
			sess.serve()
		}()
	}
}

// Shutdown stops accepting, tells every session the server is going away
// (without applying their deletions) and waits for them, or until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.shutdown()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func remoteIP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}
