// Package app wires the access binary: configuration, the storage client,
// the IMAP and POP3 listeners, TLS, metrics and shutdown.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mailfleet/mailfleet/pkg/authlimit"
	"github.com/mailfleet/mailfleet/pkg/opsserver"
	"github.com/mailfleet/mailfleet/pkg/servicemain"
	"github.com/mailfleet/mailfleet/pkg/storeclient"
	"github.com/mailfleet/mailfleet/pkg/tlsreload"
	"github.com/mailfleet/mailfleet/services/access/internal/imapd"
	"github.com/mailfleet/mailfleet/services/access/internal/maildrop"
	"github.com/mailfleet/mailfleet/services/access/internal/metrics"
	"github.com/mailfleet/mailfleet/services/access/internal/pop3"
)

// Config is everything the access binary can be told.
type Config struct {
	StorageTLS   storeclient.TLSFlags
	Storage      string
	OpsListen    string
	IMAPListen   string
	IMAPSListen  string
	POP3Listen   string
	POP3SListen  string
	TLSCert      string
	TLSKey       string
	DevTLSDir    string
	InsecureAuth bool

	MaxMessageSize        int64
	MaxSessionsPerAccount int
	POP3LockTTL           time.Duration
	POP3IdleTimeout       time.Duration
	MaxConnsPerIP         int
	MaxConns              int
	SearchMemoryMB        int
	LoginFailures         int
	LoginLockout          time.Duration
	LoginDelay            time.Duration
	ShutdownTimeout       time.Duration
}

// Flags registers every setting on fs.
func Flags(fs *flag.FlagSet) *Config {
	c := &Config{}
	c.StorageTLS.Register(fs)
	fs.StringVar(&c.Storage, "storage", "127.0.0.1:7070", "storage tier gRPC address")
	fs.StringVar(&c.OpsListen, "ops-listen", ":7081", "address of /healthz, /readyz and /metrics")
	fs.StringVar(&c.IMAPListen, "imap-listen", ":1430", "IMAP with STARTTLS (empty = off)")
	fs.StringVar(&c.IMAPSListen, "imaps-listen", ":9930", "IMAP over implicit TLS (empty = off)")
	fs.StringVar(&c.POP3Listen, "pop3-listen", ":1100", "POP3 with STLS (empty = off)")
	fs.StringVar(&c.POP3SListen, "pop3s-listen", ":9950", "POP3 over implicit TLS (empty = off)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate file (PEM), reloaded when it changes")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS key file (PEM)")
	fs.StringVar(&c.DevTLSDir, "dev-tls-dir", "", "development only: generate a self-signed certificate here if --tls-cert is not set")
	fs.BoolVar(&c.InsecureAuth, "insecure-auth", false, "development only: allow passwords without TLS")
	fs.Int64Var(&c.MaxMessageSize, "max-message-size", 50<<20, "largest APPEND accepted (keep equal to the storage tier's)")
	fs.IntVar(&c.MaxSessionsPerAccount, "max-sessions-per-account", 50, "concurrent IMAP sessions of one account on this pod")
	fs.DurationVar(&c.POP3LockTTL, "pop3-lock-ttl", time.Minute, "how long a crashed pod's POP3 maildrop lock outlives it")
	fs.DurationVar(&c.POP3IdleTimeout, "pop3-idle-timeout", 10*time.Minute, "POP3 autologout timer")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", 50, "concurrent connections per client address and protocol")
	fs.IntVar(&c.SearchMemoryMB, "search-memory-mb", 256, "MiB that SEARCH BODY/TEXT of all IMAP sessions may hold at once; searches beyond it wait their turn")
	fs.IntVar(&c.MaxConns, "max-conns", 20000, "concurrent connections per protocol (IMAP, POP3) in total; beyond it new ones are told the server is busy (0: no bound)")
	fs.IntVar(&c.LoginFailures, "login-failures", 10, "failed logins per IP or user within 5 minutes before a lockout")
	fs.DurationVar(&c.LoginLockout, "login-lockout", 15*time.Minute, "how long a lockout lasts")
	fs.DurationVar(&c.LoginDelay, "login-failure-delay", time.Second, "delay after a failed login (doubling per failure, up to 8x)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 25*time.Second, "how long sessions get to finish after SIGTERM")
	return c
}

// Main is the access binary.
func Main() {
	fs := flag.NewFlagSet("access", flag.ExitOnError)
	cfg := Flags(fs)
	servicemain.Main("access", fs, func(ctx context.Context, log *slog.Logger) error { return Run(ctx, cfg, log) })
}

// Run serves until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	tlsCfg, err := tlsreload.FromFlags(cfg.TLSCert, cfg.TLSKey, cfg.DevTLSDir, log)
	if err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	if tlsCfg == nil && !cfg.InsecureAuth {
		return errors.New("no TLS certificate (--tls-cert/--tls-key, or --dev-tls-dir for development): users could not log in")
	}
	if cfg.InsecureAuth {
		log.Warn("--insecure-auth: passwords are accepted without TLS; never use this in production")
	}
	storageTLS, err := cfg.StorageTLS.Config(log)
	if err != nil {
		return fmt.Errorf("storage TLS: %w", err)
	}
	store, err := storeclient.Dial(cfg.Storage, storageTLS)
	if err != nil {
		return err
	}
	defer store.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	limiter := authlimit.New(cfg.LoginFailures, 5*time.Minute, cfg.LoginLockout, cfg.LoginDelay)

	pop3Server := pop3.NewServer(&maildrop.POP3{Client: store, LockTTL: cfg.POP3LockTTL, Log: log}, pop3.Config{
		TLS:               tlsCfg,
		AllowInsecureAuth: cfg.InsecureAuth,
		IdleTimeout:       cfg.POP3IdleTimeout,
		MaxConnsPerIP:     cfg.MaxConnsPerIP,
		MaxConns:          cfg.MaxConns,
		Limiter:           limiter,
		Observer:          m.For("pop3"),
		Logger:            log,
	})

	imapServer := imapd.New(store, imapd.Config{
		TLS:                   tlsCfg,
		InsecureAuth:          cfg.InsecureAuth,
		MaxMessageSize:        cfg.MaxMessageSize,
		MaxConnsPerIP:         cfg.MaxConnsPerIP,
		MaxConns:              cfg.MaxConns,
		SearchMemory:          int64(cfg.SearchMemoryMB) << 20,
		MaxSessionsPerAccount: cfg.MaxSessionsPerAccount,
		Limiter:               limiter,
		Observer:              m.For("imap"),
		Logger:                log,
	})

	ops, err := opsserver.Listen(cfg.OpsListen, reg, store.Ready, log)
	if err != nil {
		return err
	}
	errc := make(chan error, 8)
	var shuttingDown atomic.Value
	var listeners []net.Listener
	type server interface {
		Serve(net.Listener, bool) error
	}
	serve := func(srv server, addr string, implicitTLS bool, name string) error {
		if addr == "" {
			return nil
		}
		if implicitTLS && tlsCfg == nil {
			return fmt.Errorf("%s needs a TLS certificate", name)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		listeners = append(listeners, ln)
		log.Info("listening", "proto", name, "addr", ln.Addr().String())
		go func() {
			if err := srv.Serve(ln, implicitTLS); err != nil && !errors.Is(err, pop3.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				s, _ := shuttingDown.Load().(bool)
				if !s {
					errc <- err
				}
			}
		}()
		return nil
	}
	for _, l := range []struct {
		srv      server
		addr     string
		implicit bool
		name     string
	}{
		{imapServer, cfg.IMAPListen, false, "imap"},
		{imapServer, cfg.IMAPSListen, true, "imaps"},
		{pop3Server, cfg.POP3Listen, false, "pop3"},
		{pop3Server, cfg.POP3SListen, true, "pop3s"},
	} {
		if err := serve(l.srv, l.addr, l.implicit, l.name); err != nil {
			return err
		}
	}
	go func() { errc <- ops.Serve() }()
	log.Info("access serving", "storage", cfg.Storage, "ops", ops.Addr())

	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	log.Info("shutting down: closing listeners and sessions")
	shuttingDown.Store(true)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); imapServer.Shutdown(shutdownCtx) }()
	go func() { defer wg.Done(); pop3Server.Shutdown(shutdownCtx) }()
	wg.Wait()
	ops.Shutdown(shutdownCtx)
	log.Info("stopped")
	return nil
}
