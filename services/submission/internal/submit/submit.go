// Package submit is the message submission server (RFC 6409, RFC 8314):
// authenticated users hand in mail on 587 (STARTTLS) or 465 (implicit TLS).
// Local recipients are delivered at once and remote ones handed to the
// durable outbound queue, in one storage step, before the 250.
//
// Implementation notes:
//   - AUTH exists only over TLS (go-smtp hides it otherwise), and MAIL needs
//     AUTH: without it nobody relays anything.
//   - The envelope sender and every From: address must belong to the
//     authenticated account (its address or an alias).
//   - Messages are DKIM-signed with the From: domain's key when it has one.
//   - No body and no password ever reaches the log.
package submit

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailfleet/mailfleet/pkg/authlimit"
	"github.com/mailfleet/mailfleet/pkg/connlimit"
	"github.com/mailfleet/mailfleet/pkg/milter"
	"github.com/mailfleet/mailfleet/pkg/storeclient"
	"github.com/mailfleet/mailfleet/pkg/timeoutconn"
	"github.com/mailfleet/mailfleet/pkg/tlsaccept"
)

// Config tunes the server.
type Config struct {
	Hostname       string
	MaxMessageSize int64
	MaxRecipients  int
	StorageTimeout time.Duration
	// CommandTimeout bounds the wait for each command line and DATA read
	// (RFC 5321 4.5.3.2; default 5 minutes).
	CommandTimeout time.Duration
	TLS            *tls.Config
	// AllowInsecureAuth permits AUTH without TLS (development only).
	AllowInsecureAuth bool
	MaxConnsPerIP     int
	MaxConns          int // in total (0: no bound)
	Limiter           *authlimit.Limiter
	SpoolDir          string
	// QueueLifetime is how long remote delivery is retried before a DSN.
	QueueLifetime time.Duration
	// Filter is the content filter (nil: none).
	Filter   *milter.Filter
	Observer Observer
	Logger   *slog.Logger
}

// Observer is told what happens, for metrics.
type Observer interface {
	Session()
	Accepted(local, remote int, bytes int64)
	Rejected(reason string)
}

// Server is the submission server; Serve it on 587 and 465.
type Server struct {
	cfg   Config
	store *storeclient.Client
	dkim  *keyCache
	smtp  *smtp.Server

	connLimit *connlimit.Limit
	closing   atomic.Bool
	nextID    atomic.Uint64
}

// New builds the server.
func New(store *storeclient.Client, cfg Config) *Server {
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = 50 << 20
	}
	if cfg.MaxRecipients == 0 {
		cfg.MaxRecipients = 100
	}
	if cfg.StorageTimeout == 0 {
		cfg.StorageTimeout = time.Minute
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = 20
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = 5 * time.Minute
	}
	if cfg.Limiter == nil {
		cfg.Limiter = authlimit.New(10, 5*time.Minute, 15*time.Minute, time.Second)
	}
	s := &Server{cfg: cfg, store: store, dkim: newKeyCache(store, time.Minute), connLimit: connlimit.New(cfg.MaxConnsPerIP)}
	s.connLimit.MaxTotal = cfg.MaxConns
	srv := smtp.NewServer(s)
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxMessageSize
	srv.MaxRecipients = cfg.MaxRecipients
	// Lines up to 64 KiB (and CRLF, which go-smtp counts) are taken and
	// kept unchanged, as on the MX: mail clients send HTML on one line.
	srv.MaxLineLength = 64<<10 + 2
	srv.ReadTimeout = cfg.CommandTimeout
	srv.WriteTimeout = 5 * time.Minute
	srv.EnableSMTPUTF8 = true
	srv.TLSConfig = cfg.TLS
	srv.AllowInsecureAuth = cfg.AllowInsecureAuth
	srv.ErrorLog = logAdapter{cfg.Logger}
	s.smtp = srv
	return s
}

type logAdapter struct{ log *slog.Logger }

func (l logAdapter) Printf(format string, v ...any) { l.log.Debug("smtp: " + sprintf(format, v...)) }
func (l logAdapter) Println(v ...any)               { l.log.Debug("smtp: " + sprint(v...)) }

// Serve serves on ln; with implicitTLS (port 465) every connection starts
// with a TLS handshake.
func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	limited := s.connLimit.Wrap(ln, "421 4.7.0 Too many connections from your address, try later\r\n")
	limited.BusyRefusal = "421 4.3.2 Server busy, try later\r\n"
	// A read timeout is final: a command line still incomplete at its
	// deadline is never run (see pkg/timeoutconn).
	ln = timeoutconn.Listener{Listener: limited}
	if implicitTLS {
		ln = tlsaccept.NewListener(ln, s.cfg.TLS, 0) // the handshake within 30 s
	}
	return s.smtp.Serve(ln)
}

// Shutdown stops accepting; new transactions get 421, current ones finish.
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
	return &session{srv: s, conn: c, ip: ip, log: s.cfg.Logger.With("proto", "submission", "conn", id, "remote", ip.String())}, nil
}

func remoteIP(c net.Conn) net.IP {
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	return net.ParseIP(host)
}
