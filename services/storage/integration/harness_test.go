// Package integration tests the storage tier as users of its API see it:
// storage processes built from this module, real etcd clusters and a real
// MinIO, all on random loopback ports.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/mailfleet/mailfleet/pkg/devpki"
	"github.com/mailfleet/mailfleet/pkg/testport"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/testing/engines"
)

var (
	minioServer *engines.MinIO
	binDir      string
	pki         *devpki.PKI // the internal CA and every tier's certificate
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "storage-integration-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	binDir = filepath.Join(dir, "bin")
	for _, b := range []struct{ out, pkg string }{
		{"storage", "github.com/mailfleet/mailfleet/services/storage"},
		{"mailctl", "github.com/mailfleet/mailfleet/mailctl"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b.out), b.pkg)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", b.pkg, "failed:", err)
			return 1
		}
	}
	// Every replica serves with mutual TLS, as in production; the tests
	// call it as the admin tier unless they say otherwise.
	if pki, err = devpki.Ensure(filepath.Join(dir, "pki"), []string{"127.0.0.1", "localhost"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if minioServer, err = engines.StartMinIO(filepath.Join(dir, "minio")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer minioServer.Stop()
	return m.Run()
}

// options for a test cluster.
type options struct {
	etcdMembers    int
	replicas       int
	driver         string // "s3" (default) or "fs"
	maxMessageSize int64
	sweepGrace     time.Duration
	extraArgs      []string // more flags for every replica
}

// cluster is one etcd cluster, one bucket (or directory) and storage replicas.
type cluster struct {
	t        *testing.T
	etcd     *engines.EtcdCluster
	bucket   string
	fsDir    string
	replicas []*replica
	opts     options
}

// replica is one storage process and its clients.
type replica struct {
	t    *testing.T
	addr string
	args []string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	conn *grpc.ClientConn

	Accounts storagev1.AccountServiceClient
	Mailbox  storagev1.MailboxServiceClient
	Messages storagev1.MessageServiceClient
	Delivery storagev1.DeliveryServiceClient
	Watch    storagev1.WatchServiceClient
	Queue    storagev1.QueueServiceClient
}

func newCluster(t *testing.T, o options) *cluster {
	t.Helper()
	if o.etcdMembers == 0 {
		o.etcdMembers = 1
	}
	if o.replicas == 0 {
		o.replicas = 1
	}
	if o.driver == "" {
		o.driver = "s3"
	}
	if o.maxMessageSize == 0 {
		o.maxMessageSize = 20 << 20
	}
	if o.sweepGrace == 0 {
		o.sweepGrace = time.Hour
	}
	etcd, err := engines.StartEtcd(t.TempDir(), o.etcdMembers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Stop)
	c := &cluster{t: t, etcd: etcd, opts: o}
	if o.driver == "s3" {
		if c.bucket, err = minioServer.NewBucket(context.Background()); err != nil {
			t.Fatal(err)
		}
	} else {
		c.fsDir = t.TempDir()
	}
	for i := 0; i < o.replicas; i++ {
		c.replicas = append(c.replicas, c.startReplica(i))
	}
	return c
}

func (c *cluster) startReplica(i int) *replica {
	t := c.t
	port, err := testport.Free()
	if err != nil {
		t.Fatal(err)
	}
	ops, err := testport.Free()
	if err != nil {
		t.Fatal(err)
	}
	endpoints := ""
	for j, e := range c.etcd.Endpoints() {
		if j > 0 {
			endpoints += ","
		}
		endpoints += e
	}
	r := &replica{
		t:    t,
		addr: "127.0.0.1:" + strconv.Itoa(port),
		log:  filepath.Join(t.TempDir(), fmt.Sprintf("storage-%d.log", i)),
		args: []string{
			"--grpc-listen", "127.0.0.1:" + strconv.Itoa(port),
			"--ops-listen", "127.0.0.1:" + strconv.Itoa(ops),
			"--etcd-endpoints", endpoints,
			"--blob-driver", c.opts.driver,
			"--fs-dir", c.fsDir,
			"--s3-endpoint", minioServer.Endpoint,
			"--s3-bucket", c.bucket,
			"--max-message-size", strconv.FormatInt(c.opts.maxMessageSize, 10),
			"--sweep-grace", c.opts.sweepGrace.String(),
			"--sweep-interval", "200ms",
			"--orphan-scan-interval", "500ms",
		},
	}
	r.args = append(r.args, pki.ServerArgs()...)
	r.args = append(r.args, c.opts.extraArgs...)
	r.start()
	t.Cleanup(func() { r.stop(syscall.SIGKILL) })
	return r
}

func (r *replica) start() {
	r.t.Helper()
	logFile, err := os.OpenFile(r.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "storage"), r.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(),
		"MAILFLEET_TEST_SHORT_GRACE=1",
		"MAILFLEET_S3_ACCESS_KEY="+minioServer.AccessKey,
		"MAILFLEET_S3_SECRET_KEY="+minioServer.SecretKey)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() { cmd.Wait(); logFile.Close() }()
	conn, err := dialAs(r.addr, "admin")
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.cmd, r.conn = cmd, conn
	r.mu.Unlock()
	r.Accounts = storagev1.NewAccountServiceClient(conn)
	r.Mailbox = storagev1.NewMailboxServiceClient(conn)
	r.Messages = storagev1.NewMessageServiceClient(conn)
	r.Delivery = storagev1.NewDeliveryServiceClient(conn)
	r.Watch = storagev1.NewWatchServiceClient(conn)
	r.Queue = storagev1.NewQueueServiceClient(conn)
	// Ready when it answers an RPC.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := r.Accounts.ListDomains(ctx, &storagev1.ListDomainsRequest{})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(r.log)
			r.t.Fatalf("storage at %s did not start: %v\n%s", r.addr, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dialAs connects to a replica with role's client certificate.
func dialAs(addr, role string) (*grpc.ClientConn, error) {
	tlsCfg, err := pki.ClientTLS(role)
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
}

func (r *replica) stop(sig syscall.Signal) {
	r.mu.Lock()
	cmd, conn := r.cmd, r.conn
	r.cmd, r.conn = nil, nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	for i := 0; i < 500; i++ {
		if cmd.Process.Signal(syscall.Signal(0)) != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn.Close()
}

// etcdClient is a direct etcd client for checks the API does not expose.
func (c *cluster) etcdClient() *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.etcd.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// objectCount counts the bodies in the cluster's bucket (not their summaries).
func (c *cluster) objectCount() int {
	bodies, _ := c.objectCounts()
	return bodies
}

// objectCounts counts the bodies and the summaries (summaries/<body key>)
// in the cluster's bucket.
func (c *cluster) objectCounts() (bodies, summaries int) {
	c.t.Helper()
	mc, err := minioServer.Client()
	if err != nil {
		c.t.Fatal(err)
	}
	for o := range mc.ListObjects(context.Background(), c.bucket, minioListAll) {
		if o.Err != nil {
			c.t.Fatal(o.Err)
		}
		if strings.HasPrefix(o.Key, "summaries/") {
			summaries++
		} else {
			bodies++
		}
	}
	return bodies, summaries
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// setupAccount creates domain (once) and an account, and returns the account.
func setupAccount(t *testing.T, r *replica, address string, quotaBytes, quotaMessages uint64) *storagev1.Account {
	t.Helper()
	ctx := ctxT(t)
	_, domain, _ := cutLast(address)
	r.Accounts.CreateDomain(ctx, &storagev1.CreateDomainRequest{Name: domain}) // AlreadyExists is fine
	resp, err := r.Accounts.CreateAccount(ctx, &storagev1.CreateAccountRequest{Address: address, Password: "pw-" + address, QuotaBytes: quotaBytes, QuotaMessages: quotaMessages})
	if err != nil {
		t.Fatalf("create account %s: %v", address, err)
	}
	return resp.Account
}

func cutLast(addr string) (string, string, bool) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			return addr[:i], addr[i+1:], true
		}
	}
	return addr, "", false
}

func mailboxID(t *testing.T, r *replica, account, name string) string {
	t.Helper()
	resp, err := r.Mailbox.GetMailbox(ctxT(t), &storagev1.GetMailboxRequest{AccountId: account, Name: name})
	if err != nil {
		t.Fatalf("get mailbox %s: %v", name, err)
	}
	return resp.Mailbox.Id
}

// appendMsg appends body to a mailbox in 16 KiB chunks.
func appendMsg(ctx context.Context, r *replica, account, mailboxID string, body []byte, flags ...string) (*storagev1.AppendMessageResponse, error) {
	stream, err := r.Messages.AppendMessage(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&storagev1.AppendMessageRequest{Part: &storagev1.AppendMessageRequest_Metadata_{Metadata: &storagev1.AppendMessageRequest_Metadata{
		AccountId: account, MailboxId: mailboxID, Flags: flags, SizeHint: uint64(len(body)),
	}}}); err != nil {
		_, err = stream.CloseAndRecv()
		return nil, err
	}
	for off := 0; off < len(body); off += 16 << 10 {
		chunk := body[off:min(off+16<<10, len(body))]
		if err := stream.Send(&storagev1.AppendMessageRequest{Part: &storagev1.AppendMessageRequest_Chunk{Chunk: &storagev1.BodyChunk{Data: chunk}}}); err != nil {
			break // the server answered early; CloseAndRecv says why
		}
	}
	return stream.CloseAndRecv()
}

// deliver delivers body to recipients.
func deliver(ctx context.Context, r *replica, recipients []string, body []byte) (*storagev1.DeliverResponse, error) {
	return deliverWith(ctx, r, &storagev1.DeliverRequest_Metadata{Recipients: recipients}, body)
}

// deliverWith delivers body with the given metadata.
func deliverWith(ctx context.Context, r *replica, meta *storagev1.DeliverRequest_Metadata, body []byte) (*storagev1.DeliverResponse, error) {
	stream, err := r.Delivery.Deliver(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&storagev1.DeliverRequest{Part: &storagev1.DeliverRequest_Metadata_{Metadata: meta}}); err != nil {
		_, err = stream.CloseAndRecv()
		return nil, err
	}
	if err := stream.Send(&storagev1.DeliverRequest{Part: &storagev1.DeliverRequest_Chunk{Chunk: &storagev1.BodyChunk{Data: body}}}); err != nil {
		_, err = stream.CloseAndRecv()
		return nil, err
	}
	return stream.CloseAndRecv()
}

// readBody fetches a whole body (or a range).
func readBody(ctx context.Context, r *replica, account, mailboxID string, uid uint32, off, n uint64) ([]byte, error) {
	stream, err := r.Messages.GetMessageBody(ctx, &storagev1.GetMessageBodyRequest{AccountId: account, MailboxId: mailboxID, Uid: uid, Offset: off, Length: n})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
		buf.Write(resp.GetChunk().GetData())
	}
}

// listAll lists every entry of a mailbox, page by page at one revision.
func listAll(t *testing.T, r *replica, account, mailboxID string) (*storagev1.Mailbox, []*storagev1.Message) {
	t.Helper()
	var all []*storagev1.Message
	req := &storagev1.ListMessagesRequest{AccountId: account, MailboxId: mailboxID, Limit: 300}
	for {
		resp, err := r.Messages.ListMessages(ctxT(t), req)
		if err != nil {
			t.Fatalf("list messages: %v", err)
		}
		all = append(all, resp.Messages...)
		if !resp.More {
			return resp.Mailbox, all
		}
		req.AfterUid, req.Revision = resp.NextAfterUid, resp.Revision
	}
}

func message(n int, size int) []byte {
	head := fmt.Sprintf("From: sender%d@example.org\r\nTo: user@example.test\r\nSubject: message %d\r\nMessage-ID: <%d@example.org>\r\n\r\n", n, n, n)
	body := bytes.Repeat([]byte(fmt.Sprintf("line of message %d\r\n", n)), max(1, (size-len(head))/20))
	return append([]byte(head), body...)
}
