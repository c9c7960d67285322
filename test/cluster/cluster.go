// Package cluster starts a whole Mailfleet on loopback from the built
// binaries — real etcd, real MinIO, storage and access processes on random
// ports — for end-to-end tests that speak only public protocols.
package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/mailfleet/mailfleet/pkg/devpki"
	"github.com/mailfleet/mailfleet/pkg/testport"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/testing/engines"
)

// Binaries builds storage, access and mailctl into dir and returns dir.
func Binaries(dir string) (string, error) {
	for _, b := range []struct{ out, pkg string }{
		{"storage", "github.com/mailfleet/mailfleet/services/storage"},
		{"access", "github.com/mailfleet/mailfleet/services/access"},
		{"inbound", "github.com/mailfleet/mailfleet/services/inbound"},
		{"submission", "github.com/mailfleet/mailfleet/services/submission"},
		{"mailctl", "github.com/mailfleet/mailfleet/mailctl"},
		{"mailfleet-dev", "github.com/mailfleet/mailfleet/devcluster"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("building %s: %v\n%s", b.pkg, err, stderr.String())
		}
	}
	return dir, nil
}

// Options size the cluster.
type Options struct {
	EtcdMembers int
	Storage     int
	// StorageArgs are extra flags for every storage process.
	StorageArgs []string
	Access      int
	// AccessArgs are extra flags for every access process.
	AccessArgs []string
	Inbound    int
	// InboundArgs are extra flags for every inbound process.
	InboundArgs []string
	// DNS is the DNS server (host:port) inbound and submission ask.
	DNS        string
	Submission int
	// SubmissionArgs are extra flags for every submission process.
	SubmissionArgs []string
}

// Cluster is a running Mailfleet.
type Cluster struct {
	t          testing.TB
	BinDir     string
	Dir        string
	Etcd       *engines.EtcdCluster
	MinIO      *engines.MinIO
	Bucket     string
	Storage    []*Process
	Access     []*Access
	Inbound    []*Inbound
	Submission []*Submission

	opts Options
	conn *grpc.ClientConn
	// PKI is the internal CA and every tier's certificate: the tiers talk
	// to storage over mutual TLS, each with its own identity, as deployed.
	PKI *devpki.PKI
	// Admin clients, talking to the first storage process.
	Accounts storagev1.AccountServiceClient
	Delivery storagev1.DeliveryServiceClient
	Messages storagev1.MessageServiceClient
	Mailbox  storagev1.MailboxServiceClient
}

// Inbound is one inbound (MX) process.
type Inbound struct {
	*Process
	SMTP, Ops string
}

// Submission is one submission process (with its queue runner).
type Submission struct {
	*Process
	Submission, Submissions, Ops string
}

// Access is one access process and its endpoints.
type Access struct {
	*Process
	IMAP, IMAPS, POP3, POP3S, Ops string
}

// Start starts a cluster and stops it when the test ends.
func Start(t testing.TB, binDir string, minio *engines.MinIO, o Options) *Cluster {
	t.Helper()
	o.EtcdMembers = max(o.EtcdMembers, 1)
	o.Storage = max(o.Storage, 1)
	dir := t.TempDir()
	etcd, err := engines.StartEtcd(filepath.Join(dir, "etcd"), o.EtcdMembers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Stop)
	bucket, err := minio.NewBucket(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, BinDir: binDir, Dir: dir, Etcd: etcd, MinIO: minio, Bucket: bucket, opts: o}
	t.Cleanup(c.dumpLogsOnFailure)
	if c.PKI, err = devpki.Ensure(filepath.Join(dir, "internal-tls"), []string{"127.0.0.1", "localhost"}); err != nil {
		t.Fatal(err)
	}
	serverTLS := c.PKI.ServerArgs()
	for i := 0; i < o.Storage; i++ {
		port, ops := freePort(t), freePort(t)
		p := c.newProcess(fmt.Sprintf("storage-%d", i), "storage", []string{
			"--grpc-listen", "127.0.0.1:" + port, "--ops-listen", "127.0.0.1:" + ops,
			"--etcd-endpoints", strings.Join(etcd.Endpoints(), ","),
			"--blob-driver", "s3", "--s3-endpoint", minio.Endpoint, "--s3-bucket", bucket,
		}, "MAILFLEET_S3_ACCESS_KEY="+minio.AccessKey, "MAILFLEET_S3_SECRET_KEY="+minio.SecretKey)
		p.args = append(p.args, serverTLS...)
		p.args = append(p.args, o.StorageArgs...)
		p.Addr = "127.0.0.1:" + port
		p.ReadyURL = "http://127.0.0.1:" + ops + "/readyz"
		p.Start()
		c.Storage = append(c.Storage, p)
	}
	for i := 0; i < o.Access; i++ {
		c.Access = append(c.Access, c.startAccess(i, c.Storage[i%len(c.Storage)].Addr, o.AccessArgs))
	}
	for i := 0; i < o.Inbound; i++ {
		in := &Inbound{SMTP: "127.0.0.1:" + freePort(t), Ops: "127.0.0.1:" + freePort(t)}
		args := []string{"--storage", c.Storage[i%len(c.Storage)].Addr, "--smtp-listen", in.SMTP, "--ops-listen", in.Ops,
			"--hostname", "mx.example.test", "--dev-tls-dir", filepath.Join(dir, "tls"), "--dns-server", o.DNS}
		args = append(args, c.PKI.ClientArgs("inbound")...)
		in.Process = c.newProcess(fmt.Sprintf("inbound-%d", i), "inbound", append(args, o.InboundArgs...))
		in.ReadyURL = "http://" + in.Ops + "/readyz"
		in.Start()
		c.Inbound = append(c.Inbound, in)
	}
	for i := 0; i < o.Submission; i++ {
		c.Submission = append(c.Submission, c.startSubmission(i, o))
	}
	adminTLS, err := c.PKI.ClientTLS("admin")
	if err != nil {
		t.Fatal(err)
	}
	c.conn, err = grpc.NewClient(c.Storage[0].Addr, grpc.WithTransportCredentials(credentials.NewTLS(adminTLS)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.conn.Close() })
	c.Accounts = storagev1.NewAccountServiceClient(c.conn)
	c.Delivery = storagev1.NewDeliveryServiceClient(c.conn)
	c.Messages = storagev1.NewMessageServiceClient(c.conn)
	c.Mailbox = storagev1.NewMailboxServiceClient(c.conn)
	return c
}

// MailctlEnv is the environment that makes mailctl this cluster's admin.
func (c *Cluster) MailctlEnv() []string {
	return append(os.Environ(), c.PKI.ClientEnv("admin")...)
}

// AddSubmission starts one more submission process.
func (c *Cluster) AddSubmission() *Submission {
	sub := c.startSubmission(len(c.Submission), c.opts)
	c.Submission = append(c.Submission, sub)
	return sub
}

func (c *Cluster) startSubmission(i int, o Options) *Submission {
	sub := &Submission{Submission: "127.0.0.1:" + freePort(c.t), Submissions: "127.0.0.1:" + freePort(c.t), Ops: "127.0.0.1:" + freePort(c.t)}
	args := []string{"--storage", c.Storage[i%len(c.Storage)].Addr, "--ops-listen", sub.Ops,
		"--submission-listen", sub.Submission, "--submissions-listen", sub.Submissions,
		"--hostname", "smtp.example.test", "--dev-tls-dir", filepath.Join(c.Dir, "tls"), "--dns-server", o.DNS,
		"--queue-poll", "100ms", "--login-failure-delay", "10ms"}
	args = append(args, c.PKI.ClientArgs("submission")...)
	queueCert, queueKey := c.PKI.Cert("queue")
	args = append(args, "--queue-storage-cert", queueCert, "--queue-storage-key", queueKey)
	sub.Process = c.newProcess(fmt.Sprintf("submission-%d", i), "submission", append(args, o.SubmissionArgs...))
	sub.ReadyURL = "http://" + sub.Ops + "/readyz"
	sub.Start()
	return sub
}

func (c *Cluster) startAccess(i int, storage string, extra []string) *Access {
	a := &Access{IMAP: "127.0.0.1:" + freePort(c.t), IMAPS: "127.0.0.1:" + freePort(c.t),
		POP3: "127.0.0.1:" + freePort(c.t), POP3S: "127.0.0.1:" + freePort(c.t), Ops: "127.0.0.1:" + freePort(c.t)}
	a.Process = c.newProcess(fmt.Sprintf("access-%d", i), "access", append([]string{
		"--storage", storage, "--ops-listen", a.Ops,
		"--imap-listen", a.IMAP, "--imaps-listen", a.IMAPS,
		"--pop3-listen", a.POP3, "--pop3s-listen", a.POP3S,
		"--dev-tls-dir", filepath.Join(c.Dir, "tls"),
	}, append(c.PKI.ClientArgs("access"), extra...)...))
	a.ReadyURL = "http://" + a.Ops + "/readyz"
	a.Start()
	return a
}

// dumpLogsOnFailure prints the end of every process log of a failed test.
func (c *Cluster) dumpLogsOnFailure() {
	if !c.t.Failed() {
		return
	}
	procs := append(append([]*Process{}, c.Storage...), c.accessProcesses()...)
	for _, in := range c.Inbound {
		procs = append(procs, in.Process)
	}
	for _, sub := range c.Submission {
		procs = append(procs, sub.Process)
	}
	for _, p := range procs {
		log := p.Log()
		if len(log) > 6000 {
			log = log[len(log)-6000:]
		}
		c.t.Logf("--- %s log (end) ---\n%s", p.Name, log)
	}
}

func (c *Cluster) accessProcesses() []*Process {
	var out []*Process
	for _, a := range c.Access {
		out = append(out, a.Process)
	}
	return out
}

// Process is one Mailfleet process; it can be killed and started again.
type Process struct {
	t        testing.TB
	Name     string
	Addr     string
	ReadyURL string
	bin      string
	args     []string
	env      []string
	LogPath  string

	mu  sync.Mutex
	cmd *exec.Cmd
}

func (c *Cluster) newProcess(name, bin string, args []string, env ...string) *Process {
	p := &Process{t: c.t, Name: name, bin: filepath.Join(c.BinDir, bin), args: args, env: env, LogPath: filepath.Join(c.Dir, name+".log")}
	c.t.Cleanup(func() { p.Signal(syscall.SIGKILL) })
	return p
}

// Start starts the process and waits until it is ready.
func (p *Process) Start() {
	p.t.Helper()
	logFile, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() { cmd.Wait(); logFile.Close() }()
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for !ready(p.ReadyURL) {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s not ready:\n%s", p.Name, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Signal sends sig and waits for the process to exit.
func (p *Process) Signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	for i := 0; i < 3000 && cmd.Process.Signal(syscall.Signal(0)) == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

// RSSKiB returns the process's resident memory in KiB (Linux), or 0.
func (p *Process) RSSKiB() int64 {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kib int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &kib)
			return kib
		}
	}
	return 0
}

// Log returns the process's log.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// CreateAccount creates domain (if needed) and an account with a password.
func (c *Cluster) CreateAccount(address, password string) *storagev1.Account {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	domain := address[strings.LastIndexByte(address, '@')+1:]
	c.Accounts.CreateDomain(ctx, &storagev1.CreateDomainRequest{Name: domain})
	resp, err := c.Accounts.CreateAccount(ctx, &storagev1.CreateAccountRequest{Address: address, Password: password})
	if err != nil {
		c.t.Fatalf("create account %s: %v", address, err)
	}
	return resp.Account
}

// Deliver stores a message for recipients, as inbound would.
func (c *Cluster) Deliver(recipients []string, body []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := c.Delivery.Deliver(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	stream.Send(&storagev1.DeliverRequest{Part: &storagev1.DeliverRequest_Metadata_{Metadata: &storagev1.DeliverRequest_Metadata{Recipients: recipients}}})
	for len(body) > 0 { // in chunks well under gRPC's message limit
		chunk := body[:min(len(body), 1<<20)]
		body = body[len(chunk):]
		stream.Send(&storagev1.DeliverRequest{Part: &storagev1.DeliverRequest_Chunk{Chunk: &storagev1.BodyChunk{Data: chunk}}})
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, r := range resp.Results {
		if r.Status != storagev1.RecipientResult_STATUS_DELIVERED {
			c.t.Fatalf("delivery to %s: %v", r.Recipient, r.Status)
		}
	}
}

// Queue returns a queue client on the first storage process.
func (c *Cluster) Queue() storagev1.QueueServiceClient {
	return storagev1.NewQueueServiceClient(c.conn)
}

// SetQuota sets an account's limits (0 = unlimited).
func (c *Cluster) SetQuota(account string, bytes, messages uint64) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Accounts.SetQuota(ctx, &storagev1.SetQuotaRequest{AccountId: account, LimitBytes: bytes, LimitMessages: messages}); err != nil {
		c.t.Fatal(err)
	}
}

// InboxUIDs lists the UIDs in an account's INBOX.
func (c *Cluster) InboxUIDs(account string) []uint32 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mb, err := c.Mailbox.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: account, Name: "INBOX"})
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.Messages.ListMessages(ctx, &storagev1.ListMessagesRequest{AccountId: account, MailboxId: mb.Mailbox.Id, Limit: 5000})
	if err != nil {
		c.t.Fatal(err)
	}
	var uids []uint32
	for _, m := range resp.Messages {
		uids = append(uids, m.Uid)
	}
	return uids
}

func freePort(t testing.TB) string {
	p, err := testport.Free()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(p)
}

func ready(url string) bool {
	return httpOK(url)
}
