// Package app wires the storage binary together: configuration, etcd, the body
// store, the gRPC server, the sweeper and the ops HTTP server.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/mailfleet/mailfleet/pkg/opsserver"
	"github.com/mailfleet/mailfleet/pkg/servicemain"
	"github.com/mailfleet/mailfleet/pkg/storeclient"
	"github.com/mailfleet/mailfleet/pkg/tlsreload"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/authz"
	"github.com/mailfleet/mailfleet/services/storage/internal/blobstore"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdmaint"
	"github.com/mailfleet/mailfleet/services/storage/internal/keys"
	"github.com/mailfleet/mailfleet/services/storage/internal/service"
)

// Config is everything the storage binary can be told.
type Config struct {
	GRPCListen string
	OpsListen  string

	EtcdEndpoints string
	EtcdPrefix    string
	EtcdUsername  string
	EtcdPassword  string
	EtcdCA        string
	EtcdCert      string
	EtcdKey       string

	BlobDriver     string
	FSDir          string
	S3Endpoint     string
	S3Bucket       string
	S3Region       string
	S3AccessKey    string
	S3SecretKey    string
	S3Prefix       string
	S3TLS          bool
	S3PartSize     uint64
	S3CreateBucket bool

	MaxMessageSize     int64
	SweepGrace         time.Duration
	QueueLifetime      time.Duration
	BulkStagingTTL     time.Duration
	ExpungeRecords     int
	MinPasswordLength  int
	ExpungeRetention   time.Duration
	LoginFailures      int
	LoginFailureWindow time.Duration
	LoginLockout       time.Duration
	SweepInterval      time.Duration
	OrphanScanInterval time.Duration
	ShutdownTimeout    time.Duration
	GRPCTLSCert        string
	GRPCTLSKey         string
	GRPCClientCA       string
	InsecurePlaintext  bool
	SessionTTL         time.Duration
	SessionMaxAge      time.Duration
	AuthCacheTTL       time.Duration
	SummaryCacheMB     int

	EtcdStatusInterval time.Duration
	EtcdDefragInterval time.Duration
	EtcdDefragMinFree  int64
	EtcdDefragPause    time.Duration
	Pprof              bool
}

// Flags registers every setting on fs.
func Flags(fs *flag.FlagSet) *Config {
	c := &Config{}
	fs.StringVar(&c.GRPCListen, "grpc-listen", ":7070", "address of the storage.v1 gRPC API")
	fs.StringVar(&c.OpsListen, "ops-listen", ":7071", "address of /healthz, /readyz and /metrics")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on the ops port")
	fs.StringVar(&c.EtcdEndpoints, "etcd-endpoints", "http://127.0.0.1:2379", "comma-separated etcd client URLs")
	fs.StringVar(&c.EtcdPrefix, "etcd-prefix", keys.DefaultPrefix, "prefix of every etcd key")
	fs.StringVar(&c.EtcdUsername, "etcd-username", "", "etcd user (optional)")
	fs.StringVar(&c.EtcdPassword, "etcd-password", "", "etcd password (optional; prefer the environment)")
	fs.StringVar(&c.EtcdCA, "etcd-ca", "", "CA bundle for etcd TLS")
	fs.StringVar(&c.EtcdCert, "etcd-cert", "", "client certificate for etcd mTLS")
	fs.StringVar(&c.EtcdKey, "etcd-key", "", "client key for etcd mTLS")
	fs.StringVar(&c.BlobDriver, "blob-driver", "fs", "body store: s3 or fs")
	fs.StringVar(&c.FSDir, "fs-dir", "./data/bodies", "directory of the fs body store")
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", "", "S3 endpoint host:port")
	fs.StringVar(&c.S3Bucket, "s3-bucket", "mailfleet", "S3 bucket")
	fs.StringVar(&c.S3Region, "s3-region", "", "S3 region")
	fs.StringVar(&c.S3AccessKey, "s3-access-key", "", "S3 access key (prefer the environment)")
	fs.StringVar(&c.S3SecretKey, "s3-secret-key", "", "S3 secret key (prefer the environment)")
	fs.StringVar(&c.S3Prefix, "s3-prefix", "", "prefix of every object key in the bucket")
	fs.BoolVar(&c.S3TLS, "s3-tls", false, "use HTTPS to reach S3")
	fs.BoolVar(&c.S3CreateBucket, "s3-create-bucket", false, "create the bucket if it does not exist (readiness waits for it)")
	fs.Uint64Var(&c.S3PartSize, "s3-part-size", 8<<20, "multipart part size in bytes (bounds memory per upload)")
	fs.Int64Var(&c.MaxMessageSize, "max-message-size", 50<<20, "largest message accepted, in bytes")
	fs.DurationVar(&c.SweepGrace, "sweep-grace", time.Hour, "how long unreferenced bodies are kept before deletion")
	def := service.DefaultConfig()
	fs.IntVar(&c.LoginFailures, "login-failures", def.LoginFailures, "failed logins of one username or client address, cluster-wide, that lock it out (0: no cluster-wide limit)")
	fs.DurationVar(&c.LoginFailureWindow, "login-failure-window", def.LoginFailureWindow, "the window in which failed logins are counted")
	fs.DurationVar(&c.LoginLockout, "login-lockout", def.LoginLockout, "how long a username or client address stays locked out")
	fs.IntVar(&c.MinPasswordLength, "min-password-length", service.DefaultConfig().MinPasswordLength, "fewest characters a password set through the API may have (0: any non-empty one)")
	fs.IntVar(&c.ExpungeRecords, "expunge-records", service.DefaultConfig().ExpungeRecords, "expunge records (IMAP QRESYNC) kept per mailbox; a client resynchronising from before the oldest gets a longer VANISHED answer, never a wrong one")
	fs.DurationVar(&c.ExpungeRetention, "expunge-retention", service.DefaultConfig().ExpungeRetention, "expunge records (IMAP QRESYNC) older than this are pruned")
	fs.DurationVar(&c.BulkStagingTTL, "bulk-staging-ttl", service.DefaultConfig().StagingTTL, "a COPY or MOVE too large for one etcd transaction holds its destination mailbox this long past each step; a holder that stopped (crashed) is cleared after it")
	fs.DurationVar(&c.QueueLifetime, "queue-lifetime", service.DefaultConfig().QueueLifetime, "how long queued mail is retried before it bounces, unless its sender set a lifetime (mail for a full local mailbox)")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", time.Minute, "how often the sweeper runs")
	fs.DurationVar(&c.OrphanScanInterval, "orphan-scan-interval", 24*time.Hour, "how often the whole body store is scanned for orphans")
	fs.IntVar(&c.SummaryCacheMB, "summary-cache-mb", 64, "MiB of message summaries (envelopes and MIME trees) each replica keeps in memory; about 1 700 realistic messages per MiB")
	fs.DurationVar(&c.AuthCacheTTL, "auth-cache-ttl", 5*time.Minute, "remember successful logins this long (0 = off); a password change takes effect at once")
	fs.StringVar(&c.GRPCTLSCert, "grpc-tls-cert", "", "certificate of the gRPC API (required; reloaded on change)")
	fs.StringVar(&c.GRPCTLSKey, "grpc-tls-key", "", "key of the gRPC API certificate (required)")
	fs.StringVar(&c.GRPCClientCA, "grpc-client-ca", "", "CA that signs the tiers' client certificates (required): each caller's role is its certificate's CN, mailfleet-<role>")
	fs.BoolVar(&c.InsecurePlaintext, "insecure-plaintext-grpc", false, "INSECURE: serve the gRPC API without TLS and trust every caller as admin (anyone who reaches the port reads every mailbox)")
	fs.DurationVar(&c.SessionTTL, "session-ttl", time.Hour, "lifetime of the session token a login returns (the access and submission tiers renew it while the user's session lasts)")
	fs.DurationVar(&c.SessionMaxAge, "session-max-age", 24*time.Hour, "no session token is renewed longer than this after its login: the user logs in again (a stolen token dies by then)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 25*time.Second, "how long in-flight requests may take after SIGTERM")
	maint := etcdmaint.DefaultConfig()
	fs.DurationVar(&c.EtcdStatusInterval, "etcd-status-interval", maint.StatusInterval, "how often etcd members' database sizes and alarms are read for the metrics (0 = never)")
	fs.DurationVar(&c.EtcdDefragInterval, "etcd-defrag-interval", maint.DefragInterval, "how often the one elected replica looks for etcd members to defragment (0 = never; a NOSPACE alarm makes it look at once)")
	fs.Int64Var(&c.EtcdDefragMinFree, "etcd-defrag-min-free", maint.MinFree, "defragment an etcd member once this many bytes of its database are free (db size minus db size in use)")
	fs.DurationVar(&c.EtcdDefragPause, "etcd-defrag-pause", maint.Pause, "rest between two members' defragmentations, after the first has caught up")
	return c
}

// Main is the storage binary.
func Main() {
	fs := flag.NewFlagSet("storage", flag.ExitOnError)
	cfg := Flags(fs)
	servicemain.Main("storage", fs, func(ctx context.Context, log *slog.Logger) error { return Run(ctx, cfg, log) })
}

// Run serves until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	if cfg.SweepGrace < time.Minute && os.Getenv("MAILFLEET_TEST_SHORT_GRACE") == "" {
		return errors.New("--sweep-grace must be at least 1m: it must outlast the longest upload")
	}
	serverOpts, err := grpcCredentials(cfg, log)
	if err != nil {
		return err
	}
	etcd, err := newEtcdClient(cfg)
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	defer etcd.Close()
	blobs, err := newBlobStore(cfg)
	if err != nil {
		return fmt.Errorf("body store: %w", err)
	}
	svc := service.New(etcd, cfg.EtcdPrefix, blobs, service.Config{
		MaxMessageSize:     cfg.MaxMessageSize,
		SweepGrace:         cfg.SweepGrace,
		QueueLifetime:      cfg.QueueLifetime,
		StagingTTL:         cfg.BulkStagingTTL,
		ExpungeRecords:     cfg.ExpungeRecords,
		ExpungeRetention:   cfg.ExpungeRetention,
		LoginFailures:      cfg.LoginFailures,
		LoginFailureWindow: cfg.LoginFailureWindow,
		LoginLockout:       cfg.LoginLockout,
		AuthCacheTTL:       cfg.AuthCacheTTL,
		SummaryCacheBytes:  cfg.SummaryCacheMB << 20,
		MinPasswordLength:  cfg.MinPasswordLength,
	}, log)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := newRPCMetrics(reg)
	registerRecipientCache(reg, svc)

	sessionKey, err := svc.SessionKey(ctx)
	if err != nil {
		return fmt.Errorf("session key: %w", err)
	}
	svc.SetSessions(authz.NewSessions(sessionKey, cfg.SessionTTL, cfg.SessionMaxAge))
	auth := authz.New(svc, svc.Sessions(), cfg.InsecurePlaintext, log)
	grpcServer := grpc.NewServer(append(serverOpts,
		// Refusals are counted and timed like every other answer.
		grpc.ChainUnaryInterceptor(metrics.unary, recoverUnary(log), auth.Unary),
		grpc.ChainStreamInterceptor(metrics.stream, recoverStream(log), auth.Stream),
		// The clients' limits, mirrored: what they may send and receive.
		grpc.MaxRecvMsgSize(storeclient.MaxSendMsgSize),
		grpc.MaxSendMsgSize(storeclient.MaxRecvMsgSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// Clients re-resolve the storage name when a connection ends: ending
		// each after a while spreads their calls over replicas added since.
		// Streams already open (watches) keep their connection.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: 5 * time.Minute}),
	)...)
	storagev1.RegisterAccountServiceServer(grpcServer, svc)
	storagev1.RegisterMailboxServiceServer(grpcServer, svc)
	storagev1.RegisterMessageServiceServer(grpcServer, svc)
	storagev1.RegisterDeliveryServiceServer(grpcServer, svc)
	storagev1.RegisterWatchServiceServer(grpcServer, svc)
	storagev1.RegisterQueueServiceServer(grpcServer, svc)
	storagev1.RegisterMaintenanceServiceServer(grpcServer, svc)
	// The standard health service: the tiers' readiness probes call it.
	healthpb.RegisterHealthServer(grpcServer, health.NewServer())

	ln, err := net.Listen("tcp", cfg.GRPCListen)
	if err != nil {
		return err
	}
	ops, err := opsserver.Listen(cfg.OpsListen, reg, svc.Ready, log)
	if err != nil {
		ln.Close()
		return err
	}
	if cfg.Pprof {
		ops.EnablePprof()
	}
	log.Info("storage serving", "grpc", ln.Addr().String(), "ops", ops.Addr(), "blob_driver", cfg.BlobDriver, "etcd_prefix", cfg.EtcdPrefix)

	sweepCtx, stopSweeper := context.WithCancel(ctx)
	defer stopSweeper()
	go func() {
		defer func() {
			if r := recover(); r != nil {
				log.Error("sweeper panicked", "panic", r)
			}
		}()
		svc.RunSweeper(sweepCtx, cfg.SweepInterval, cfg.OrphanScanInterval)
	}()
	go func() {
		defer func() {
			if r := recover(); r != nil {
				log.Error("recipient watch panicked", "panic", r)
			}
		}()
		svc.RunRecipientWatch(sweepCtx)
	}()
	maintCfg := etcdmaint.DefaultConfig()
	maintCfg.StatusInterval, maintCfg.DefragInterval = cfg.EtcdStatusInterval, cfg.EtcdDefragInterval
	maintCfg.MinFree, maintCfg.Pause = cfg.EtcdDefragMinFree, cfg.EtcdDefragPause
	maintCfg.ElectionKey = keys.Layout{Prefix: cfg.EtcdPrefix}.DefragElection()
	maint := etcdmaint.New(etcd, maintCfg, reg, log)
	maintDone := make(chan struct{})
	go func() {
		defer close(maintDone)
		maint.Run(sweepCtx) // it recovers its own panics
	}()
	// Stop it while etcd is still open: it hands the election over at once.
	defer func() {
		stopSweeper()
		select {
		case <-maintDone:
		case <-time.After(5 * time.Second):
		}
	}()
	errc := make(chan error, 2)
	go func() { errc <- grpcServer.Serve(ln) }()
	go func() { errc <- ops.Serve() }()

	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	log.Info("shutting down: finishing in-flight requests")
	svc.Drain() // watchers resume on another replica
	done := make(chan struct{})
	go func() { grpcServer.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.ShutdownTimeout):
		grpcServer.Stop()
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ops.Shutdown(shutdownCtx)
	log.Info("stopped")
	return nil
}

// grpcCredentials is the gRPC API's transport security: TLS with a client
// certificate requested from every caller and checked by authz (which
// answers Unauthenticated to a caller without a valid one), or, only with
// --insecure-plaintext-grpc, none at all.
func grpcCredentials(cfg *Config, log *slog.Logger) ([]grpc.ServerOption, error) {
	if cfg.InsecurePlaintext {
		if cfg.GRPCTLSCert != "" || cfg.GRPCClientCA != "" {
			return nil, errors.New("--insecure-plaintext-grpc and --grpc-tls-cert/--grpc-client-ca exclude each other")
		}
		log.Warn("INSECURE: the storage gRPC API runs without TLS and trusts every caller as admin (--insecure-plaintext-grpc)")
		return nil, nil
	}
	if cfg.GRPCTLSCert == "" || cfg.GRPCTLSKey == "" || cfg.GRPCClientCA == "" {
		return nil, errors.New("the storage gRPC API needs --grpc-tls-cert, --grpc-tls-key and --grpc-client-ca (mutual TLS between tiers); " +
			"--insecure-plaintext-grpc runs it without any authentication")
	}
	cert, err := tlsreload.New(cfg.GRPCTLSCert, cfg.GRPCTLSKey, log)
	if err != nil {
		return nil, fmt.Errorf("gRPC TLS: %w", err)
	}
	pool, err := tlsreload.NewPool(cfg.GRPCClientCA, log)
	if err != nil {
		return nil, fmt.Errorf("--grpc-client-ca: %w", err)
	}
	tlsCfg := cert.Config()
	tlsCfg.ClientAuth = tls.RequestClientCert // checked by authz, per connection
	return []grpc.ServerOption{grpc.Creds(authz.ServerCredentials(credentials.NewTLS(tlsCfg), pool.Get))}, nil
}

func newEtcdClient(cfg *Config) (*clientv3.Client, error) {
	c := clientv3.Config{
		Endpoints:            strings.Split(cfg.EtcdEndpoints, ","),
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Username:             cfg.EtcdUsername,
		Password:             cfg.EtcdPassword,
		Logger:               zap.NewNop(),
		// Retries of idempotent reads are the client's; writes are retried
		// by etcdtx on conflict only.
		MaxCallSendMsgSize: 2 << 20,
	}
	if cfg.EtcdCA != "" || cfg.EtcdCert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.EtcdCA != "" {
			pem, err := os.ReadFile(cfg.EtcdCA)
			if err != nil {
				return nil, err
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, errors.New("no certificate in --etcd-ca")
			}
		}
		if cfg.EtcdCert != "" {
			cert, err := tls.LoadX509KeyPair(cfg.EtcdCert, cfg.EtcdKey)
			if err != nil {
				return nil, err
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		c.TLS = tc
	}
	return clientv3.New(c)
}

func newBlobStore(cfg *Config) (blobstore.Store, error) {
	switch cfg.BlobDriver {
	case "fs":
		return blobstore.NewFS(cfg.FSDir)
	case "s3":
		if cfg.S3Endpoint == "" {
			return nil, errors.New("--s3-endpoint is required with --blob-driver=s3")
		}
		return blobstore.NewS3(blobstore.S3Config{
			Endpoint: cfg.S3Endpoint, Bucket: cfg.S3Bucket, Region: cfg.S3Region,
			AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3SecretKey, Prefix: cfg.S3Prefix,
			UseTLS: cfg.S3TLS, PartSize: cfg.S3PartSize, CreateBucket: cfg.S3CreateBucket,
		})
	}
	return nil, fmt.Errorf("unknown --blob-driver %q (want s3 or fs)", cfg.BlobDriver)
}

// registerRecipientCache exports the address directory cache's figures: its
// hit rate, and whether its etcd watch runs (0: every lookup reads etcd).
func registerRecipientCache(reg *prometheus.Registry, svc *service.Server) {
	stat := func(pick func(hits, misses uint64, live bool) float64) func() float64 {
		return func() float64 { return pick(svc.RecipientCacheStats()) }
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mailfleet_storage_recipient_cache_hits_total",
			Help: "Recipient lookups (RCPT, deliveries) answered from the replica's directory cache.",
		}, stat(func(h, _ uint64, _ bool) float64 { return float64(h) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mailfleet_storage_recipient_cache_misses_total",
			Help: "Recipient lookups that read the address directory in etcd.",
		}, stat(func(_, m uint64, _ bool) float64 { return float64(m) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mailfleet_storage_recipient_cache_live",
			Help: "1 while the directory watch runs and the cache keeps answers, 0 while it is off.",
		}, stat(func(_, _ uint64, live bool) float64 {
			if live {
				return 1
			}
			return 0
		})),
	)
}
