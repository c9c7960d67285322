// Package devrun is the one-command development cluster: embedded etcd (the
// real etcd server code), then storage, access, inbound and submission as
// child processes from ./bin, all on 127.0.0.1, data under one directory.
//
// Safety: outbound mail to other domains stays in the queue (submission
// runs with --deliver=false) unless MAILFLEET_SMARTHOST names a relay.
package devrun

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/mailfleet/mailfleet/pkg/devpki"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// ports of the development cluster (all overridable with flags).
type ports struct {
	etcdClient, etcdPeer                   int
	storage, storageOps                    int
	imap, imaps, pop3, pop3s, accessOps    int
	inbound, inboundOps                    int
	submission, submissions, submissionOps int
}

// Main runs the cluster until SIGINT/SIGTERM and returns the exit code.
func Main(args []string) int {
	fs := flag.NewFlagSet("mailfleet-dev", flag.ContinueOnError)
	data := fs.String("data", envOr("MAILFLEET_DATA", ".mailfleet"), "directory for etcd, bodies, certificates and logs")
	bin := fs.String("bin", "bin", "directory of the built binaries")
	var p ports
	for _, f := range []struct {
		ptr         *int
		name        string
		def         int
		description string
	}{
		{&p.etcdClient, "etcd-port", 2379, "embedded etcd's client port"},
		{&p.etcdPeer, "etcd-peer-port", 2380, "embedded etcd's peer port"},
		{&p.storage, "storage-port", 7070, "storage tier's gRPC API (mutual TLS; mailctl talks to it)"},
		{&p.storageOps, "storage-ops-port", 7071, "storage tier's /healthz, /readyz and /metrics"},
		{&p.imap, "imap-port", 1430, "IMAP with STARTTLS (143 in production)"},
		{&p.imaps, "imaps-port", 9930, "IMAP over TLS (993 in production)"},
		{&p.pop3, "pop3-port", 1100, "POP3 with STLS (110 in production)"},
		{&p.pop3s, "pop3s-port", 9950, "POP3 over TLS (995 in production)"},
		{&p.accessOps, "access-ops-port", 7081, "access tier's /healthz, /readyz and /metrics"},
		{&p.inbound, "smtp-port", 2525, "the MX: SMTP from the Internet (25 in production)"},
		{&p.inboundOps, "inbound-ops-port", 7091, "inbound tier's /healthz, /readyz and /metrics"},
		{&p.submission, "submission-port", 5870, "submission with STARTTLS (587 in production)"},
		{&p.submissions, "submissions-port", 4650, "submission over TLS (465 in production)"},
		{&p.submissionOps, "submission-ops-port", 7101, "submission tier's /healthz, /readyz and /metrics"},
	} {
		fs.IntVar(f.ptr, f.name, f.def, f.description)
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *data, *bin, p); err != nil {
		fmt.Fprintln(os.Stderr, "mailfleet-dev:", err)
		return 1
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

func run(ctx context.Context, data, bin string, p ports) error {
	data, _ = filepath.Abs(data)
	for _, d := range []string{"etcd", "bodies", "tls", "logs"} {
		if err := os.MkdirAll(filepath.Join(data, d), 0o700); err != nil {
			return err
		}
	}
	// 1. etcd, in process.
	etcd, err := startEtcd(filepath.Join(data, "etcd"), filepath.Join(data, "logs", "etcd.log"), p)
	if err != nil {
		return fmt.Errorf("embedded etcd: %w", err)
	}
	defer etcd.Close()

	// 2. The tiers, as processes, each with its own identity towards
	// storage (mutual TLS, as in the chart).
	pki, err := devpki.Ensure(filepath.Join(data, "internal-tls"), []string{"127.0.0.1", "localhost"})
	if err != nil {
		return fmt.Errorf("internal certificates: %w", err)
	}
	mailctlEnv, err := writeMailctlEnv(data, pki, addr(p.storage))
	if err != nil {
		return err
	}
	tlsDir := filepath.Join(data, "tls")
	var children []*child
	defer func() {
		for i := len(children) - 1; i >= 0; i-- {
			children[i].stop()
		}
	}()
	storageArgs := append([]string{"--grpc-listen", addr(p.storage), "--ops-listen", addr(p.storageOps),
		"--etcd-endpoints", "http://" + addr(p.etcdClient)}, pki.ServerArgs()...)
	if os.Getenv("MAILFLEET_BLOB_DRIVER") == "" {
		storageArgs = append(storageArgs, "--blob-driver", "fs", "--fs-dir", filepath.Join(data, "bodies"))
	}
	submissionArgs := []string{"--submission-listen", addr(p.submission), "--submissions-listen", addr(p.submissions),
		"--ops-listen", addr(p.submissionOps), "--storage", addr(p.storage), "--dev-tls-dir", tlsDir, "--hostname", "localhost"}
	submissionArgs = append(submissionArgs, pki.ClientArgs("submission")...)
	queueCert, queueKey := pki.Cert("queue")
	submissionArgs = append(submissionArgs, "--queue-storage-cert", queueCert, "--queue-storage-key", queueKey)
	if relay := os.Getenv("MAILFLEET_SMARTHOST"); relay != "" {
		submissionArgs = append(submissionArgs, "--routes", "*="+relay)
	} else {
		submissionArgs = append(submissionArgs, "--deliver=false")
	}
	for _, c := range []struct {
		name  string
		args  []string
		ready int
	}{
		{"storage", storageArgs, p.storageOps},
		{"access", append([]string{"--imap-listen", addr(p.imap), "--imaps-listen", addr(p.imaps), "--pop3-listen", addr(p.pop3),
			"--pop3s-listen", addr(p.pop3s), "--ops-listen", addr(p.accessOps), "--storage", addr(p.storage), "--dev-tls-dir", tlsDir},
			pki.ClientArgs("access")...), p.accessOps},
		{"inbound", append([]string{"--smtp-listen", addr(p.inbound), "--ops-listen", addr(p.inboundOps), "--storage", addr(p.storage),
			"--dev-tls-dir", tlsDir, "--hostname", "localhost"}, pki.ClientArgs("inbound")...), p.inboundOps},
		{"submission", submissionArgs, p.submissionOps},
	} {
		ch, err := startChild(ctx, filepath.Join(bin, c.name), c.args, filepath.Join(data, "logs", c.name+".log"))
		if err != nil {
			return err
		}
		children = append(children, ch)
		if err := waitReady(ctx, fmt.Sprintf("http://%s/readyz", addr(c.ready)), ch); err != nil {
			return fmt.Errorf("%s did not become ready (see %s): %w", c.name, ch.logPath, err)
		}
	}

	// 3. The demo account, on first run.
	password, err := ensureDemo(ctx, addr(p.storage), data, pki)
	if err != nil {
		return err
	}
	printWelcome(p, data, password, mailctlEnv)

	select {
	case <-ctx.Done():
	case err := <-firstExit(children):
		return err
	}
	fmt.Println("\nmailfleet-dev: stopping…")
	return nil
}

func startEtcd(dir, logPath string, p ports) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "dev"
	cfg.Dir = dir
	client, _ := url.Parse("http://" + addr(p.etcdClient))
	peer, _ := url.Parse("http://" + addr(p.etcdPeer))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.InitialCluster = "dev=" + peer.String()
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"
	cfg.LogLevel = zapcore.WarnLevel.String()
	// embed.NewConfig leaves this at 0, unlike etcd's own flags (300 ms):
	// every request would then be logged as a slow one ("request stats").
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	cfg.LogOutputs = []string{logPath}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("not ready after 60s")
	}
}

// child is one tier's process.
type child struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed when the process is gone
	err     error         // why, once exited is closed
}

func startChild(ctx context.Context, bin string, args []string, logPath string) (*child, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s not built (run `make build`): %w", bin, err)
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	c := &child{cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		logFile.Close()
		c.err = fmt.Errorf("%s exited: %v (see %s)", filepath.Base(bin), err, logPath)
		close(c.exited)
	}()
	return c, nil
}

// stop asks the child to shut down gracefully, then insists.
func (c *child) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
	}
}

func firstExit(children []*child) <-chan error {
	out := make(chan error, len(children))
	for _, c := range children {
		go func(c *child) { <-c.exited; out <- c.err }(c)
	}
	return out
}

func waitReady(ctx context.Context, url string, c *child) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-c.exited:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out")
}

// ensureDemo creates example.test and demo@example.test once, and returns
// the password to show. MAILFLEET_DEMO_PASSWORD, when set, is the demo
// password from this start on; otherwise the one kept in
// data/demo-password (generated the first time). A password changed since
// (mailctl account passwd) is not shown: "" then.
func ensureDemo(ctx context.Context, storage, data string, pki *devpki.PKI) (string, error) {
	tlsCfg, err := pki.ClientTLS("admin")
	if err != nil {
		return "", err
	}
	conn, err := grpc.NewClient(storage, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	accounts := storagev1.NewAccountServiceClient(conn)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pwFile := filepath.Join(data, "demo-password")
	password := os.Getenv("MAILFLEET_DEMO_PASSWORD")
	if b, err := os.ReadFile(pwFile); err == nil && password == "" {
		if _, err := accounts.GetAccount(ctx, &storagev1.GetAccountRequest{Address: "demo@example.test"}); err == nil {
			kept := strings.TrimSpace(string(b))
			if _, err := accounts.Authenticate(ctx, &storagev1.AuthenticateRequest{Username: "demo@example.test", Password: kept}); err != nil {
				return "", nil // changed with mailctl: not ours to show (or to reset)
			}
			return kept, nil
		}
	}
	if password == "" {
		b := make([]byte, 12)
		rand.Read(b)
		password = base64.RawURLEncoding.EncodeToString(b)
	}
	if _, err := accounts.CreateDomain(ctx, &storagev1.CreateDomainRequest{Name: "example.test"}); err != nil && storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_ADDRESS_EXISTS {
		return "", fmt.Errorf("creating example.test: %w", err)
	}
	acc, err := accounts.GetAccount(ctx, &storagev1.GetAccountRequest{Address: "demo@example.test"})
	if err == nil {
		_, err = accounts.SetPassword(ctx, &storagev1.SetPasswordRequest{AccountId: acc.Account.Id, Password: password})
	} else {
		_, err = accounts.CreateAccount(ctx, &storagev1.CreateAccountRequest{Address: "demo@example.test", Password: password})
	}
	if err != nil {
		return "", fmt.Errorf("creating demo@example.test: %w", err)
	}
	return password, os.WriteFile(pwFile, []byte(password+"\n"), 0o600)
}

// writeMailctlEnv writes the environment that makes ./bin/mailctl the admin
// of this cluster (its address and the admin identity) and returns its path.
func writeMailctlEnv(data string, pki *devpki.PKI, storage string) (string, error) {
	path := filepath.Join(data, "mailctl.env")
	env := append([]string{"MAILFLEET_STORAGE=" + storage}, pki.ClientEnv("admin")...)
	return path, os.WriteFile(path, []byte(strings.Join(env, "\n")+"\n"), 0o600)
}

func printWelcome(p ports, data, password, mailctlEnv string) {
	shown := password
	if password == "" {
		// The console never prints a password that does not work.
		password = "PASSWORD"
		shown = "changed with mailctl since it was generated (MAILFLEET_DEMO_PASSWORD=... make run sets one)"
	}
	outbound := "held in the queue (set MAILFLEET_SMARTHOST=host:port to relay)"
	if relay := os.Getenv("MAILFLEET_SMARTHOST"); relay != "" {
		outbound = "relayed to " + relay
	}
	fmt.Printf(`
Mailfleet is running on this machine. Ctrl-C stops it; data stays in %s.

  IMAP         %-16s STARTTLS     IMAPS        %s  TLS
  POP3         %-16s STLS         POP3S        %s  TLS
  SMTP (MX)    %-16s inbound, any sender, local recipients only
  Submission   %-16s STARTTLS     Submissions  %s  TLS, AUTH PLAIN/LOGIN
  Storage gRPC %-16s mTLS         etcd         %s  (embedded)
  Outbound mail to other domains: %s
  Certificate: self-signed, %s/tls/cert.pem (tell your client to accept it)

  Account      demo@example.test
  Password     %s

Send a first message (to the MX, as the Internet would):
  swaks --server %s --from you@example.org --to demo@example.test
  printf 'From: you@example.org\r\nSubject: hello\r\n\r\nHi!\r\n' | curl -s smtp://%s --mail-from you@example.org --mail-rcpt demo@example.test -T -

Read it:
  curl -sk --user 'demo@example.test:%s' 'imaps://%s/INBOX;UID=1'
  python3 -c "import poplib,ssl; p=poplib.POP3_SSL('127.0.0.1',%d,context=ssl._create_unverified_context()); p.user('demo@example.test'); p.pass_('%s'); print(b'\n'.join(p.retr(1)[1]).decode())"

Mail client: IMAP 127.0.0.1:%d (SSL/TLS) or :%d (STARTTLS); SMTP 127.0.0.1:%d (SSL/TLS) or :%d (STARTTLS),
normal password, user demo@example.test.
Admin (mailctl with the admin certificate of %s/internal-tls):
  env $(cat %s) ./bin/mailctl account list
`, data, addr(p.imap), addr(p.imaps), addr(p.pop3), addr(p.pop3s), addr(p.inbound), addr(p.submission), addr(p.submissions),
		addr(p.storage), addr(p.etcdClient), outbound, data, shown,
		addr(p.inbound), addr(p.inbound), password, addr(p.imaps), p.pop3s, password,
		p.imaps, p.imap, p.submissions, p.submission, data, mailctlEnv)
}
