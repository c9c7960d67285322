// Package app wires the submission binary: the submission listeners (587
// STARTTLS, 465 TLS), the outbound queue runner, TLS, DNS, metrics and
// graceful shutdown.
package app

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mailfleet/mailfleet/pkg/authlimit"
	"github.com/mailfleet/mailfleet/pkg/dnsresolver"
	"github.com/mailfleet/mailfleet/pkg/milter"
	"github.com/mailfleet/mailfleet/pkg/opsserver"
	"github.com/mailfleet/mailfleet/pkg/servicemain"
	"github.com/mailfleet/mailfleet/pkg/storeclient"
	"github.com/mailfleet/mailfleet/pkg/tlsreload"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/submission/internal/queue"
	"github.com/mailfleet/mailfleet/services/submission/internal/submit"
)

// Config is everything the submission binary can be told.
type Config struct {
	StorageTLS        storeclient.TLSFlags
	Milter            milter.Flags
	QueueCert         string
	QueueKey          string
	SubmissionListen  string
	SubmissionsListen string
	OpsListen         string
	Storage           string
	Hostname          string
	TLSCert           string
	TLSKey            string
	DevTLSDir         string
	InsecureAuth      bool
	DNSServer         string
	MaxMessageSize    int64
	MaxRecipients     int
	MaxConnsPerIP     int
	MaxConns          int
	LoginFailures     int
	LoginLockout      time.Duration
	LoginDelay        time.Duration
	Deliver           bool
	Routes            string
	RemotePort        int
	RetrySchedule     string
	QueueWorkers      int
	DestConcurrency   int
	DelayWarning      time.Duration
	MTASTS            bool
	MTASTSPort        int
	OutboundCA        string
	LeaseTTL          time.Duration
	QueuePoll         time.Duration
	QueueLifetime     time.Duration
	SpoolDir          string
	ShutdownTimeout   time.Duration
	CommandTimeout    time.Duration
}

// Flags registers every setting on fs.
func Flags(fs *flag.FlagSet) *Config {
	host, _ := os.Hostname()
	c := &Config{}
	c.StorageTLS.Register(fs)
	fs.StringVar(&c.QueueCert, "queue-storage-cert", "", "the queue runner's client certificate (CN mailfleet-queue; same CA as --storage-ca): it calls storage with its own identity (required with TLS)")
	fs.StringVar(&c.QueueKey, "queue-storage-key", "", "key of the queue runner's client certificate")
	fs.StringVar(&c.SubmissionListen, "submission-listen", ":5870", "submission with STARTTLS (port 587 behind the Service; empty = off)")
	fs.StringVar(&c.SubmissionsListen, "submissions-listen", ":4650", "submission over implicit TLS (port 465; empty = off)")
	fs.StringVar(&c.OpsListen, "ops-listen", ":7101", "address of /healthz, /readyz and /metrics")
	fs.StringVar(&c.Storage, "storage", "127.0.0.1:7070", "storage tier gRPC address")
	fs.StringVar(&c.Hostname, "hostname", host, "this server's public name (greeting, EHLO, Received, DSNs)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate file (PEM), reloaded when it changes")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS key file (PEM)")
	fs.StringVar(&c.DevTLSDir, "dev-tls-dir", "", "development only: generate a self-signed certificate here if --tls-cert is not set")
	fs.BoolVar(&c.InsecureAuth, "insecure-auth", false, "development only: allow AUTH without TLS")
	fs.StringVar(&c.DNSServer, "dns-server", "", "DNS server host:port for MX lookups (empty = the system's)")
	fs.Int64Var(&c.MaxMessageSize, "max-message-size", 50<<20, "largest message accepted, in bytes")
	fs.IntVar(&c.MaxRecipients, "max-recipients", 100, "recipients per message")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", 20, "concurrent connections per client address")
	fs.IntVar(&c.MaxConns, "max-conns", 2000, "concurrent connections in total (both ports); beyond it 421 4.3.2 (0: no bound)")
	fs.IntVar(&c.LoginFailures, "login-failures", 10, "failed logins per IP or user within 5 minutes before a lockout")
	fs.DurationVar(&c.LoginLockout, "login-lockout", 15*time.Minute, "how long a lockout lasts")
	fs.DurationVar(&c.LoginDelay, "login-failure-delay", time.Second, "delay after a failed login (doubling per failure, up to 8x)")
	fs.StringVar(&c.SpoolDir, "spool-dir", "", "where messages over 1 MiB wait during DATA (default: the temp dir)")
	c.Milter.Register(fs)
	fs.BoolVar(&c.Deliver, "deliver", true, "run the outbound queue runner (false: mail for other domains stays queued)")
	fs.StringVar(&c.Routes, "routes", "", `static next hops: "example.com=mx.example.net:25,*=smarthost:587" (* = every other domain)`)
	fs.IntVar(&c.RemotePort, "remote-port", 25, "SMTP port of remote servers found through MX records")
	fs.StringVar(&c.RetrySchedule, "retry-schedule", "1m,5m,15m,30m,1h,2h,4h", "back-off between delivery attempts; the last repeats")
	fs.IntVar(&c.QueueWorkers, "queue-workers", 32, "deliveries this pod makes at once")
	fs.IntVar(&c.DestConcurrency, "queue-destination-concurrency", 8, "deliveries to one destination (recipient domain) this pod makes at once")
	fs.DurationVar(&c.DelayWarning, "delay-warning", 4*time.Hour, "tell the sender once that a message is still undelivered after this long (RFC 3464 Action: delayed; 0: never)")
	fs.BoolVar(&c.MTASTS, "mta-sts", true, "apply the recipient domains' MTA-STS policies (RFC 8461)")
	fs.IntVar(&c.MTASTSPort, "mta-sts-port", 443, "HTTPS port of MTA-STS policy hosts (tests only)")
	fs.StringVar(&c.OutboundCA, "outbound-ca", "", "PEM file of the CAs that verify MTA-STS policy hosts and MX hosts under a policy (empty: the system's roots)")
	fs.DurationVar(&c.LeaseTTL, "queue-lease-ttl", 5*time.Minute, "how long a dead pod's queue items stay leased")
	fs.DurationVar(&c.QueueLifetime, "queue-lifetime", 5*24*time.Hour, "how long remote delivery is retried before the sender gets a DSN")
	fs.DurationVar(&c.QueuePoll, "queue-poll", time.Second, "pause between queue scans when nothing is due")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 25*time.Second, "how long transactions and deliveries may finish after SIGTERM")
	fs.DurationVar(&c.CommandTimeout, "command-timeout", 5*time.Minute, "wait for each command line and DATA read (RFC 5321 4.5.3.2); a line still incomplete then is not run and the connection ends")
	return c
}

// Main is the submission binary.
func Main() {
	fs := flag.NewFlagSet("submission", flag.ExitOnError)
	cfg := Flags(fs)
	servicemain.Main("submission", fs, func(ctx context.Context, log *slog.Logger) error { return Run(ctx, cfg, log) })
}

func parseRoutes(s string) (map[string]string, error) {
	routes := map[string]string{}
	for _, r := range strings.Split(s, ",") {
		if strings.TrimSpace(r) == "" {
			continue
		}
		domain, hop, ok := strings.Cut(strings.TrimSpace(r), "=")
		if _, _, err := net.SplitHostPort(hop); !ok || err != nil || domain == "" {
			return nil, fmt.Errorf("bad route %q (want domain=host:port)", r)
		}
		routes[strings.ToLower(domain)] = hop
	}
	return routes, nil
}

func parseSchedule(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, p := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("bad retry schedule entry %q", p)
		}
		out = append(out, d)
	}
	return out, nil
}

type metrics struct {
	sessions, messages, bytes, bounces, delayed prometheus.Counter
	rejections, attempts, destAttempts          *prometheus.CounterVec
	destBounces, mtaSTS                         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sessions:     prometheus.NewCounter(prometheus.CounterOpts{Name: "mailfleet_submission_sessions_total", Help: "Submission sessions."}),
		messages:     prometheus.NewCounter(prometheus.CounterOpts{Name: "mailfleet_submission_messages_total", Help: "Messages accepted."}),
		bytes:        prometheus.NewCounter(prometheus.CounterOpts{Name: "mailfleet_submission_bytes_total", Help: "Bytes accepted."}),
		bounces:      prometheus.NewCounter(prometheus.CounterOpts{Name: "mailfleet_queue_bounces_total", Help: "Recipients a DSN was sent for."}),
		delayed:      prometheus.NewCounter(prometheus.CounterOpts{Name: "mailfleet_queue_delay_notifications_total", Help: "Delay DSNs sent (RFC 3464 Action: delayed)."}),
		rejections:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailfleet_submission_rejections_total", Help: "Refusals by reason."}, []string{"reason"}),
		attempts:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailfleet_queue_attempts_total", Help: "Per-recipient delivery attempts by result."}, []string{"result"}),
		destAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailfleet_queue_destination_attempts_total", Help: "Per-recipient delivery attempts by destination (recipient domain) and result: delivered, deferred, failed."}, []string{"destination", "result"}),
		destBounces:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailfleet_queue_destination_bounces_total", Help: "Recipients a DSN was sent for, by destination."}, []string{"destination"}),
		mtaSTS:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailfleet_queue_mta_sts_failures_total", Help: "MX hosts that did not satisfy an MTA-STS policy, by mode and reason (mx_mismatch, starttls, certificate)."}, []string{"mode", "reason"}),
	}
	reg.MustRegister(m.sessions, m.messages, m.bytes, m.bounces, m.delayed, m.rejections, m.attempts, m.destAttempts, m.destBounces, m.mtaSTS)
	return m
}

func (m *metrics) Session()                            { m.sessions.Inc() }
func (m *metrics) Accepted(local, remote int, b int64) { m.messages.Inc(); m.bytes.Add(float64(b)) }
func (m *metrics) Rejected(reason string)              { m.rejections.WithLabelValues(reason).Inc() }
func (m *metrics) Delayed()                            { m.delayed.Inc() }
func (m *metrics) MTASTS(mode, reason string)          { m.mtaSTS.WithLabelValues(mode, reason).Inc() }
func (m *metrics) Attempt(dest, result string) {
	m.attempts.WithLabelValues(result).Inc()
	m.destAttempts.WithLabelValues(dest, result).Inc()
}
func (m *metrics) Bounced(dest string) {
	m.bounces.Inc()
	m.destBounces.WithLabelValues(dest).Inc()
}

// queueGauges reports at scrape time the queue depth, the oldest item's
// age and the recipients pending per destination (the whole queue), and
// what this pod's runner holds per destination.
type queueGauges struct {
	store              *storeclient.Client
	runner             *queue.Runner // nil with --deliver=false
	depth, age, queued *prometheus.Desc
	waiting, inFlight  *prometheus.Desc
}

func newQueueGauges(store *storeclient.Client, runner *queue.Runner) *queueGauges {
	dest := []string{"destination"}
	return &queueGauges{store: store, runner: runner,
		depth:    prometheus.NewDesc("mailfleet_queue_depth", "Items in the outbound queue.", nil, nil),
		age:      prometheus.NewDesc("mailfleet_queue_oldest_age_seconds", "Age of the oldest queued item.", nil, nil),
		queued:   prometheus.NewDesc("mailfleet_queue_destination_queued", "Recipients pending in the whole queue, by destination (recipient domain; local mailboxes are \"(local)\").", dest, nil),
		waiting:  prometheus.NewDesc("mailfleet_queue_destination_waiting", "Deliveries this pod holds leased, waiting for a worker, by destination.", dest, nil),
		inFlight: prometheus.NewDesc("mailfleet_queue_destination_in_flight", "Deliveries this pod is making, by destination.", dest, nil),
	}
}

func (g *queueGauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{g.depth, g.age, g.queued, g.waiting, g.inFlight} {
		ch <- d
	}
}

func (g *queueGauges) Collect(ch chan<- prometheus.Metric) {
	if g.runner != nil {
		for dest, st := range g.runner.Destinations() {
			ch <- prometheus.MustNewConstMetric(g.waiting, prometheus.GaugeValue, float64(st.Waiting), dest)
			ch <- prometheus.MustNewConstMetric(g.inFlight, prometheus.GaugeValue, float64(st.InFlight), dest)
		}
	}
	// Within Prometheus's default scrape timeout (10 s) with room to spare:
	// a queue too long to page through in time leaves these gauges out of
	// one scrape rather than failing the scrape.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	depth := 0
	oldest := 0.0
	queued := map[string]int{}
	err := storagev1.ListAllQueue(ctx, g.store.Queue, func(items []*storagev1.QueueItem) error {
		depth += len(items)
		for _, it := range items {
			oldest = max(oldest, time.Since(it.CreatedAt.AsTime()).Seconds())
			for _, rc := range it.Recipients {
				if rc.State != storagev1.QueueRecipient_STATE_PENDING {
					continue
				}
				dest := "(local)"
				if !it.Local {
					dest = strings.ToLower(rc.Address[strings.LastIndexByte(rc.Address, '@')+1:])
				}
				queued[dest]++
			}
		}
		return nil
	})
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(g.depth, prometheus.GaugeValue, float64(depth))
	ch <- prometheus.MustNewConstMetric(g.age, prometheus.GaugeValue, oldest)
	for dest, n := range queued {
		ch <- prometheus.MustNewConstMetric(g.queued, prometheus.GaugeValue, float64(n), dest)
	}
}

// Run serves until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	routes, err := parseRoutes(cfg.Routes)
	if err != nil {
		return err
	}
	schedule, err := parseSchedule(cfg.RetrySchedule)
	if err != nil {
		return err
	}
	tlsCfg, err := tlsreload.FromFlags(cfg.TLSCert, cfg.TLSKey, cfg.DevTLSDir, log)
	if err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	if tlsCfg == nil && !cfg.InsecureAuth {
		return errors.New("no TLS certificate (--tls-cert/--tls-key, or --dev-tls-dir for development): users could not log in")
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
	// The queue runner is its own tier towards storage (it leases and
	// completes queue items, which user sessions may not).
	queueTLS := storeclient.TLSFlags{CA: cfg.StorageTLS.CA, Cert: cfg.QueueCert, Key: cfg.QueueKey, Insecure: cfg.StorageTLS.Insecure}
	queueTLSCfg, err := queueTLS.Config(log)
	if err != nil {
		return fmt.Errorf("queue runner's storage TLS (--queue-storage-cert, --queue-storage-key): %w", err)
	}
	queueStore, err := storeclient.Dial(cfg.Storage, queueTLSCfg)
	if err != nil {
		return err
	}
	defer queueStore.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := newMetrics(reg)
	var roots *x509.CertPool
	if cfg.OutboundCA != "" {
		pem, err := os.ReadFile(cfg.OutboundCA)
		if err != nil {
			return fmt.Errorf("--outbound-ca: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--outbound-ca %s: no certificate", cfg.OutboundCA)
		}
	}
	var runner *queue.Runner
	if cfg.Deliver {
		resolver := dnsresolver.New(cfg.DNSServer)
		reg.MustRegister(resolver.Collectors()...)
		runner = queue.New(queueStore, resolver, queue.Config{
			Hostname: cfg.Hostname, Workers: cfg.QueueWorkers, DestinationConcurrency: cfg.DestConcurrency,
			LeaseTTL: cfg.LeaseTTL, PollInterval: cfg.QueuePoll, RemotePort: cfg.RemotePort, Routes: routes, Schedule: schedule,
			DelayWarning: cfg.DelayWarning, MTASTS: cfg.MTASTS, PolicyPort: cfg.MTASTSPort, RootCAs: roots,
			Observer: m, Logger: log,
		})
	}
	reg.MustRegister(newQueueGauges(queueStore, runner))

	filter, err := cfg.Milter.New("submission", cfg.Hostname, reg, log)
	if err != nil {
		return err
	}
	server := submit.New(store, submit.Config{
		Hostname: cfg.Hostname, MaxMessageSize: cfg.MaxMessageSize, MaxRecipients: cfg.MaxRecipients,
		TLS: tlsCfg, AllowInsecureAuth: cfg.InsecureAuth, MaxConnsPerIP: cfg.MaxConnsPerIP, MaxConns: cfg.MaxConns,
		Limiter:       authlimit.New(cfg.LoginFailures, 5*time.Minute, cfg.LoginLockout, cfg.LoginDelay),
		QueueLifetime: cfg.QueueLifetime, SpoolDir: cfg.SpoolDir, CommandTimeout: cfg.CommandTimeout,
		Filter: filter, Observer: m, Logger: log,
	})
	ops, err := opsserver.Listen(cfg.OpsListen, reg, store.Ready, log)
	if err != nil {
		return err
	}
	errc := make(chan error, 4)
	for _, l := range []struct {
		addr     string
		implicit bool
	}{{cfg.SubmissionListen, false}, {cfg.SubmissionsListen, true}} {
		if l.addr == "" {
			continue
		}
		if l.implicit && tlsCfg == nil {
			return errors.New("--submissions-listen needs a TLS certificate")
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return err
		}
		log.Info("listening", "addr", ln.Addr().String(), "implicit_tls", l.implicit)
		go func(ln net.Listener, implicit bool) { errc <- server.Serve(ln, implicit) }(ln, l.implicit)
	}
	go func() { errc <- ops.Serve() }()

	runCtx, stopRunner := context.WithCancel(context.Background())
	var runnerDone sync.WaitGroup
	if runner != nil {
		runnerDone.Add(1)
		go func() { defer runnerDone.Done(); runner.Run(runCtx) }()
		log.Info("queue runner started", "workers", cfg.QueueWorkers, "destination_concurrency", cfg.DestConcurrency, "routes", len(routes), "mta_sts", cfg.MTASTS)
	} else {
		log.Warn("--deliver=false: mail for other domains stays in the queue")
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			stopRunner()
			return err
		}
	}
	log.Info("shutting down: finishing transactions and deliveries")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	stopRunner() // no new leases; items in flight finish
	server.Shutdown(shutdownCtx)
	done := make(chan struct{})
	go func() { runnerDone.Wait(); close(done) }()
	select {
	case <-done:
	case <-shutdownCtx.Done():
		log.Warn("deliveries still running at shutdown; their leases will expire and another pod retries them")
	}
	ops.Shutdown(shutdownCtx)
	log.Info("stopped")
	return nil
}
