package imapd

import (
	"context"
	"crypto/tls"
	"fmt"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailfleet/mailfleet/pkg/authlimit"
	"github.com/mailfleet/mailfleet/pkg/connlimit"
	"github.com/mailfleet/mailfleet/pkg/storeclient"
	"github.com/mailfleet/mailfleet/pkg/tlsaccept"
)

// Observer is told about connections, logins and commands (for metrics).
type Observer interface {
	Connection()
	Login(result string)
	Command(name string, ok bool, d time.Duration)
}

// Config tunes the IMAP server.
type Config struct {
	// TLS enables STARTTLS and port 993; nil disables both.
	TLS *tls.Config
	// InsecureAuth allows LOGIN/AUTHENTICATE without TLS (development only).
	InsecureAuth bool
	// MaxMessageSize caps APPENDLIMIT (the storage tier's limit).
	MaxMessageSize int64
	// CommandTimeout bounds the storage calls of one command.
	CommandTimeout time.Duration
	// MaxConnsPerIP bounds concurrent connections from one address.
	MaxConnsPerIP int
	// MaxConns bounds concurrent connections in total (0: no bound).
	MaxConns int
	// SearchMemory bounds the bytes that SEARCH BODY/TEXT of all sessions
	// hold at once (default 256 MiB; see budget.go).
	SearchMemory int64
	// MaxSessionsPerAccount bounds one account's sessions on this pod.
	MaxSessionsPerAccount int
	Limiter               *authlimit.Limiter
	Observer              Observer
	Logger                *slog.Logger
}

// Server is the IMAP server of one access pod.
type Server struct {
	cfg   Config
	store *storeclient.Client
	hub   *Hub
	imap  *imapconn.Server

	mu        sync.Mutex
	connLimit *connlimit.Limit
	conns     map[*imapconn.Conn]bool
	perAcct   map[string]int
	nextID    uint64
	closing   bool
	listeners []net.Listener

	searchMemory *memoryBudget
}

// New builds the server.
func New(store *storeclient.Client, cfg Config) *Server {
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = 2 * time.Minute
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = 50
	}
	if cfg.MaxSessionsPerAccount == 0 {
		cfg.MaxSessionsPerAccount = 50
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = 50 << 20
	}
	if cfg.Limiter == nil {
		cfg.Limiter = authlimit.New(10, 5*time.Minute, 15*time.Minute, time.Second)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, store: store, hub: NewHub(store, cfg.Logger), connLimit: connlimit.New(cfg.MaxConnsPerIP),
		conns: map[*imapconn.Conn]bool{}, perAcct: map[string]int{}}
	s.imap = imapconn.NewServer(imapconn.Options{
		NewSession:   s.newSession,
		Caps:         capabilities,
		TLSConfig:    cfg.TLS,
		InsecureAuth: cfg.InsecureAuth,
		Logger:       cfg.Logger,
	})
	s.connLimit.MaxTotal = cfg.MaxConns
	if cfg.SearchMemory <= 0 {
		cfg.SearchMemory = 256 << 20
	}
	s.searchMemory = newMemoryBudget(cfg.SearchMemory)
	return s
}

// capabilities are the extensions the sessions back (imapconn announces
// them after login).
var capabilities = imap.CapSet{
	imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {},
	imap.CapIdle: {}, imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapNamespace: {},
	imap.CapSpecialUse: {}, imap.CapCreateSpecialUse: {}, imap.CapESearch: {}, imap.CapSearchRes: {},
	imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapStatusSize: {}, imap.CapBinary: {},
	imap.CapLiteralPlus: {}, imap.CapUnselect: {}, imap.CapEnable: {}, imap.CapAppendLimit: {},
	imap.CapSASLIR: {}, imap.CapChildren: {}, imap.CapUnauthenticate: {},
	imapconn.CapMultiAppend: {}, imapconn.CapObjectID: {}, imapconn.CapSaveDate: {}, imapconn.CapPreview: {},
	imapconn.CapNotify: {},
}

func (s *Server) newSession(conn *imapconn.Conn) (imapconn.Session, error) {
	s.mu.Lock()
	s.conns[conn] = true
	s.nextID++
	id := s.nextID
	s.mu.Unlock()
	ip := remoteIP(conn.NetConn())
	sess := &session{srv: s, conn: conn, ip: ip, log: s.cfg.Logger.With("proto", "imap", "conn", id, "remote", ip)}
	return &instrumented{session: sess}, nil
}

func (s *Server) acquireAccountSession(account string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perAcct[account] >= s.cfg.MaxSessionsPerAccount {
		return false
	}
	s.perAcct[account]++
	return true
}

func (s *Server) releaseAccountSession(account string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perAcct[account]--; s.perAcct[account] <= 0 {
		delete(s.perAcct, account)
	}
}

// Serve serves IMAP on ln; with implicitTLS (port 993) every connection
// starts with a TLS handshake.
func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	// The limit wraps the TCP connection and TLS wraps that: go-imap
	// recognises a TLS connection only as a *tls.Conn.
	limited := s.connLimit.Wrap(ln, "* BYE Too many connections from your address\r\n")
	limited.BusyRefusal = "* BYE Server busy, try later\r\n"
	if s.cfg.Observer != nil {
		limited.OnAccept = s.cfg.Observer.Connection
	}
	ln = limited
	if implicitTLS {
		if s.cfg.TLS == nil {
			return fmt.Errorf("imap: implicit TLS needs a TLS config")
		}
		// The handshake is bounded (30 s for all of it), not left to
		// go-imap's per-read deadlines, which a dripping client resets.
		ln = tlsaccept.NewListener(ln, s.cfg.TLS, 0)
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	return s.imap.Serve(ln)
}

// Shutdown says BYE to every client (so it reconnects, to another pod) and
// closes the server.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	conns := make([]*imapconn.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Bye("Server shutting down, please reconnect")
	}
	if err := s.imap.Close(); err != nil {
		return err
	}
	// Each connection says BYE at its next opportunity: give them the
	// time to, so clients know to reconnect elsewhere.
	return s.imap.Wait(ctx)
}
