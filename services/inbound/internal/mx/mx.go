// Package mx is the inbound SMTP server (RFC 5321): it accepts mail for local
// recipients only, checks SPF, DKIM and DMARC, and stores each message once
// for all its recipients through the storage tier.
//
// Implementation notes:
//   - RCPT is checked against the storage resolver at once: unknown users and
//     foreign domains are refused there (no open relay, ever).
//   - 250 after DATA is sent only when the storage tier answered that the body
//     is durable and every recipient's index entry committed; any storage
//     failure is a 451, never a 250.
//   - The message is spooled (memory, then an unlinked temp file) only for
//     the length of the transaction, to verify DKIM before the
//     Authentication-Results header is prepended.
//   - Bare LF in DATA is refused (SMTP smuggling); only CRLF.CRLF ends DATA.
//   - No body and no password ever reaches the log.
package mx

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailfleet/mailfleet/pkg/connlimit"
	"github.com/mailfleet/mailfleet/pkg/milter"
	"github.com/mailfleet/mailfleet/pkg/ratelimit"
	"github.com/mailfleet/mailfleet/pkg/spool"
	"github.com/mailfleet/mailfleet/pkg/storeclient"
	"github.com/mailfleet/mailfleet/pkg/timeoutconn"
	"github.com/mailfleet/mailfleet/services/inbound/internal/authcheck"
)

// Config tunes the MX.
type Config struct {
	// Hostname is this server's name in the greeting, Received and
	// Authentication-Results.
	Hostname       string
	MaxMessageSize int64
	// MaxHeaderSize bounds the header section in bytes (0: the default,
	// spool.DefaultMaxHeaderBytes).
	MaxHeaderSize int
	MaxRecipients int
	// MaxCommands bounds MAIL/RCPT commands before DATA (a session that
	// never sends DATA, RSETs included).
	MaxCommands int
	// DMARCReject refuses mail whose DMARC policy is reject and fails;
	// otherwise such mail is only tagged.
	DMARCReject    bool
	SpoolDir       string
	StorageTimeout time.Duration
	TLS            *tls.Config
	// MaxConnsPerIP bounds concurrent connections per client address
	// (default 50, as Postfix's smtpd_client_connection_count_limit).
	MaxConnsPerIP int
	MaxConns      int // in total (0: no bound)
	// MaxLineLength bounds a line in bytes, CRLF excluded (default 64 KiB).
	// go-smtp has one limit for command and DATA lines.
	MaxLineLength int
	// DNSBLZones are checked for the client address at the first RCPT,
	// as Postfix's reject_rbl_client; DNSBLTempFail answers 451 when a
	// zone cannot be asked (otherwise the check is skipped).
	DNSBLZones    []string
	DNSBLTempFail bool
	// Resolver serves the DNSBL lookups (the cached one of the process).
	Resolver IPResolver
	// AuthTimeout bounds the SPF, DKIM and DMARC lookups of one message
	// (default 20 s, RFC 7208 4.6.4's floor for SPF).
	AuthTimeout time.Duration
	// CommandTimeout bounds the wait for each command line and each DATA
	// read (RFC 5321 4.5.3.2: at least 5 minutes; the default).
	CommandTimeout time.Duration
	// ConnRatePerIP and MessageRatePerIP bound new connections and MAIL
	// commands per client address and minute (0: no limit).
	ConnRatePerIP    int
	MessageRatePerIP int
	Observer         Observer
	// Filter is the content filter (milter); nil: none.
	Filter *milter.Filter
	Logger *slog.Logger
}

// Observer is told what happens, for metrics.
type Observer interface {
	Session()
	Accepted(recipients int, bytes int64)
	Rejected(reason string)
}

// Server is the MX.
type Server struct {
	cfg     Config
	store   *storeclient.Client
	checker *authcheck.Checker
	smtp    *smtp.Server

	connLimit *connlimit.Limit
	connRate  *ratelimit.Limiter
	msgRate   *ratelimit.Limiter
	closing   atomic.Bool
	nextID    atomic.Uint64
}

// New builds the server.
func New(store *storeclient.Client, checker *authcheck.Checker, cfg Config) *Server {
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 5 * time.Minute // RFC 5321 4.5.3.2
	}
	if cfg.MaxHeaderSize <= 0 {
		cfg.MaxHeaderSize = spool.DefaultMaxHeaderBytes
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = 50 << 20
	}
	if cfg.MaxRecipients == 0 {
		cfg.MaxRecipients = 100
	}
	if cfg.MaxCommands == 0 {
		cfg.MaxCommands = 1000
	}
	if cfg.StorageTimeout == 0 {
		cfg.StorageTimeout = time.Minute
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = 50
	}
	if cfg.MaxLineLength <= 0 {
		cfg.MaxLineLength = 64 << 10
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = 20 * time.Second
	}
	s := &Server{cfg: cfg, store: store, checker: checker, connLimit: connlimit.New(cfg.MaxConnsPerIP),
		connRate: ratelimit.New(cfg.ConnRatePerIP), msgRate: ratelimit.New(cfg.MessageRatePerIP)}
	s.connLimit.MaxTotal = cfg.MaxConns
	srv := smtp.NewServer(s)
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxMessageSize
	srv.MaxRecipients = cfg.MaxRecipients
	// RFC 5321 4.5.3.1.6 allows 1000, but real mail (HTML on one line,
	// unwrapped base64) has longer lines; they are stored unchanged. +2:
	// go-smtp counts the CRLF too.
	srv.MaxLineLength = cfg.MaxLineLength + 2
	srv.ReadTimeout = cfg.CommandTimeout
	srv.WriteTimeout = 5 * time.Minute
	srv.EnableSMTPUTF8 = true
	srv.TLSConfig = cfg.TLS
	srv.ErrorLog = logAdapter{cfg.Logger}
	s.smtp = srv
	return s
}

type logAdapter struct{ log *slog.Logger }

func (l logAdapter) Printf(format string, v ...any) { l.log.Debug("smtp: " + sprintf(format, v...)) }
func (l logAdapter) Println(v ...any)               { l.log.Debug("smtp: " + sprint(v...)) }

// Serve accepts connections on ln (already wrapped for PROXY protocol if used).
func (s *Server) Serve(ln net.Listener) error {
	limited := s.connLimit.Wrap(ln, "421 4.7.0 Too many connections from your address, try later\r\n")
	limited.BusyRefusal = "421 4.3.2 Server busy, try later\r\n"
	limited.Rate, limited.RateRefusal = s.connRate, "421 4.7.0 Too many connections from your address in the last minute, try later\r\n"
	if s.cfg.Observer != nil {
		limited.OnRefuse = func() { s.cfg.Observer.Rejected("connections-per-ip") }
		limited.OnRateRefuse = func() { s.cfg.Observer.Rejected("connection-rate") }
	}
	// A read timeout is final: a command line still incomplete at its
	// deadline is never run (see pkg/timeoutconn).
	return s.smtp.Serve(timeoutconn.Listener{Listener: limited})
}

// Shutdown stops accepting; sessions get 421 for new transactions and the
// current ones finish, until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	err := s.smtp.Shutdown(ctx)
	if err != nil {
		s.smtp.Close()
	}
	return err
}

// NewSession is smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	if s.cfg.Observer != nil {
		s.cfg.Observer.Session()
	}
	id := s.nextID.Add(1)
	ip := remoteIP(c.Conn())
	return &session{srv: s, conn: c, ip: ip, id: id,
		log: s.cfg.Logger.With("proto", "smtp", "conn", id, "remote", ip.String())}, nil
}

func remoteIP(c net.Conn) net.IP {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP
	}
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	return net.ParseIP(host)
}
