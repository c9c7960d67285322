// Package app wires the inbound binary: configuration, the storage client,
// DNS, TLS, the SMTP listener (optionally behind PROXY protocol), metrics and
// graceful shutdown.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mailfleet/mailfleet/pkg/dnsresolver"
	"github.com/mailfleet/mailfleet/pkg/milter"
	"github.com/mailfleet/mailfleet/pkg/opsserver"
	"github.com/mailfleet/mailfleet/pkg/servicemain"
	"github.com/mailfleet/mailfleet/pkg/spool"
	"github.com/mailfleet/mailfleet/pkg/storeclient"
	"github.com/mailfleet/mailfleet/pkg/tlsreload"
	"github.com/mailfleet/mailfleet/services/inbound/internal/authcheck"
	"github.com/mailfleet/mailfleet/services/inbound/internal/mx"
)

// Config is everything the inbound binary can be told.
type Config struct {
	StorageTLS      storeclient.TLSFlags
	SMTPListen      string
	OpsListen       string
	Storage         string
	Hostname        string
	TLSCert         string
	TLSKey          string
	DevTLSDir       string
	DNSServer       string
	DNSBL           string
	DNSBLTempError  string
	MaxLineLength   int
	MaxMessageSize  int64
	MaxHeaderSize   int
	CommandTimeout  time.Duration
	MaxRecipients   int
	MaxConnsPerIP   int
	MaxConns        int
	ConnRatePerIP   int
	MsgRatePerIP    int
	DMARCPolicy     string
	SpoolDir        string
	ProxyProtocol   bool
	Pprof           bool
	ShutdownTimeout time.Duration
	Milter          milter.Flags
}

// Flags registers every setting on fs.
func Flags(fs *flag.FlagSet) *Config {
	host, _ := os.Hostname()
	c := &Config{}
	c.StorageTLS.Register(fs)
	fs.StringVar(&c.SMTPListen, "smtp-listen", ":2525", "SMTP (the MX, port 25 behind the Service)")
	fs.StringVar(&c.OpsListen, "ops-listen", ":7091", "address of /healthz, /readyz and /metrics")
	fs.StringVar(&c.Storage, "storage", "127.0.0.1:7070", "storage tier gRPC address")
	fs.StringVar(&c.Hostname, "hostname", host, "this MX's public name (greeting, Received, Authentication-Results)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate file (PEM) for STARTTLS, reloaded when it changes")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS key file (PEM)")
	fs.StringVar(&c.DevTLSDir, "dev-tls-dir", "", "development only: generate a self-signed certificate here if --tls-cert is not set")
	fs.StringVar(&c.DNSServer, "dns-server", "", "DNS server host:port for SPF/DKIM/DMARC and DNSBLs (empty = the nameservers of /etc/resolv.conf); answers are cached for their TTL")
	fs.StringVar(&c.DNSBL, "dnsbl", "", "comma-separated DNSBL zones (as Postfix's reject_rbl_client): a listed client gets 554 5.7.1 at RCPT")
	fs.StringVar(&c.DNSBLTempError, "dnsbl-temperror", "skip", "when a DNSBL zone cannot be asked: skip (accept) or tempfail (451 4.4.3)")
	fs.IntVar(&c.MaxLineLength, "max-line-length", 64<<10, "longest line accepted (DATA and commands), in bytes without CRLF; longer lines get 500 5.5.2")
	fs.Int64Var(&c.MaxMessageSize, "max-message-size", 50<<20, "largest message accepted, in bytes (SIZE)")
	fs.DurationVar(&c.CommandTimeout, "command-timeout", 5*time.Minute, "wait for each command line and DATA read (RFC 5321 4.5.3.2 asks for at least 5 minutes); a line still incomplete then is not run and the connection ends")
	fs.IntVar(&c.MaxHeaderSize, "max-header-size", spool.DefaultMaxHeaderBytes, "largest header section accepted, in bytes (as Postfix's header_size_limit); at most 1000 fields either way")
	fs.IntVar(&c.MaxRecipients, "max-recipients", 100, "recipients per message")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", 50, "concurrent connections per client address (Postfix's smtpd_client_connection_count_limit)")
	fs.IntVar(&c.MaxConns, "max-conns", 2000, "concurrent connections in total; beyond it 421 4.3.2 (0: no bound)")
	fs.IntVar(&c.ConnRatePerIP, "conn-rate-per-ip", 0, "new connections per client address and minute (0: no limit)")
	fs.IntVar(&c.MsgRatePerIP, "message-rate-per-ip", 0, "messages (MAIL commands) per client address and minute (0: no limit)")
	fs.StringVar(&c.DMARCPolicy, "dmarc-policy", "reject", "what to do when DMARC fails with p=reject: reject or tag")
	fs.StringVar(&c.SpoolDir, "spool-dir", "", "where messages over 1 MiB wait during DATA (default: the temp dir)")
	fs.BoolVar(&c.ProxyProtocol, "proxy-protocol", false, "expect a PROXY protocol v1/v2 header on every connection (behind a load balancer)")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on the ops port")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 25*time.Second, "how long transactions may finish after SIGTERM")
	c.Milter.Register(fs)
	return c
}

// Main is the inbound binary.
func Main() {
	fs := flag.NewFlagSet("inbound", flag.ExitOnError)
	cfg := Flags(fs)
	servicemain.Main("inbound", fs, func(ctx context.Context, log *slog.Logger) error { return Run(ctx, cfg, log) })
}

// metrics implements mx.Observer.
type metrics struct {
	sessions, messages, bytes prometheus.Counter
	rejections                *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sessions:   prometheus.NewCounter(prometheus.CounterOpts{Name: "mailfleet_inbound_sessions_total", Help: "SMTP sessions."}),
		messages:   prometheus.NewCounter(prometheus.CounterOpts{Name: "mailfleet_inbound_messages_total", Help: "Messages accepted and stored."}),
		bytes:      prometheus.NewCounter(prometheus.CounterOpts{Name: "mailfleet_inbound_bytes_total", Help: "Bytes of accepted messages."}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailfleet_inbound_rejections_total", Help: "Refusals by reason."}, []string{"reason"}),
	}
	reg.MustRegister(m.sessions, m.messages, m.bytes, m.rejections)
	return m
}

func (m *metrics) Session()                    { m.sessions.Inc() }
func (m *metrics) Accepted(_ int, bytes int64) { m.messages.Inc(); m.bytes.Add(float64(bytes)) }
func (m *metrics) Rejected(reason string)      { m.rejections.WithLabelValues(reason).Inc() }

// Run serves until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	if cfg.DMARCPolicy != "reject" && cfg.DMARCPolicy != "tag" {
		return fmt.Errorf("--dmarc-policy must be reject or tag, not %q", cfg.DMARCPolicy)
	}
	if cfg.DNSBLTempError != "skip" && cfg.DNSBLTempError != "tempfail" {
		return fmt.Errorf("--dnsbl-temperror must be skip or tempfail, not %q", cfg.DNSBLTempError)
	}
	var zones []string
	for _, z := range strings.Split(cfg.DNSBL, ",") {
		if z = strings.TrimSpace(z); z != "" {
			zones = append(zones, z)
		}
	}
	tlsCfg, err := tlsreload.FromFlags(cfg.TLSCert, cfg.TLSKey, cfg.DevTLSDir, log)
	if err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	if tlsCfg == nil {
		log.Warn("no TLS certificate: STARTTLS is not offered")
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
	filter, err := cfg.Milter.New("inbound", cfg.Hostname, reg, log)
	if err != nil {
		return err
	}
	resolver := dnsresolver.New(cfg.DNSServer)
	reg.MustRegister(resolver.Collectors()...)
	server := mx.New(store, &authcheck.Checker{Resolver: resolver, AuthServID: cfg.Hostname}, mx.Config{
		Hostname:         cfg.Hostname,
		MaxMessageSize:   cfg.MaxMessageSize,
		MaxHeaderSize:    cfg.MaxHeaderSize,
		CommandTimeout:   cfg.CommandTimeout,
		MaxRecipients:    cfg.MaxRecipients,
		MaxConnsPerIP:    cfg.MaxConnsPerIP,
		MaxConns:         cfg.MaxConns,
		MaxLineLength:    cfg.MaxLineLength,
		DNSBLZones:       zones,
		DNSBLTempFail:    cfg.DNSBLTempError == "tempfail",
		Resolver:         resolver,
		ConnRatePerIP:    cfg.ConnRatePerIP,
		MessageRatePerIP: cfg.MsgRatePerIP,
		DMARCReject:      cfg.DMARCPolicy == "reject",
		SpoolDir:         cfg.SpoolDir,
		TLS:              tlsCfg,
		Observer:         newMetrics(reg),
		Filter:           filter,
		Logger:           log,
	})
	ops, err := opsserver.Listen(cfg.OpsListen, reg, store.Ready, log)
	if err != nil {
		return err
	}
	if cfg.Pprof {
		ops.EnablePprof()
	}
	ln, err := net.Listen("tcp", cfg.SMTPListen)
	if err != nil {
		return err
	}
	if cfg.ProxyProtocol {
		// The load balancer's header gives the client's real address, which
		// SPF, limits and logs then use.
		ln = &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: 5 * time.Second,
			ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }}
	}
	log.Info("inbound serving", "smtp", ln.Addr().String(), "ops", ops.Addr(), "hostname", cfg.Hostname, "proxy_protocol", cfg.ProxyProtocol)
	errc := make(chan error, 2)
	go func() { errc <- server.Serve(ln) }()
	go func() { errc <- ops.Serve() }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
	}
	log.Info("shutting down: finishing transactions, refusing new ones with 421")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	server.Shutdown(shutdownCtx)
	ops.Shutdown(shutdownCtx)
	log.Info("stopped")
	return nil
}
