// Command bench measures the storage tier against a real etcd, all on
// loopback.
//
// Mode append (the default) measures appends through the storage gRPC API:
// 10 KiB messages from 1, 8 and 32 concurrent clients (one account each),
// with either a real MinIO (s3 driver) or a local directory (fs driver) as
// the body store. It prints messages/s and p50/p99 latency.
//
// Mode etcd-bytes appends n messages (pkg/mailcorpus, and simple ones with 1
// and 10 recipients) to one mailbox and prints what they cost in etcd after
// compaction and defragmentation: bytes per message, the figure that sizes a
// cell (docs/sizing.md).
//
//	go run ./services/storage/cmd/bench [-messages 2000] [-size 10240] [-drivers s3,fs]
//	go run ./services/storage/cmd/bench -mode etcd-bytes [-n 2000] [-corpus mailcorpus]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/blobstore"
	"github.com/mailfleet/mailfleet/services/storage/internal/service"
	"github.com/mailfleet/mailfleet/services/storage/testing/engines"
)

func main() {
	messages := flag.Int("messages", 2000, "messages per run (at least 200 per client count of 1)")
	size := flag.Int("size", 10<<10, "message size in bytes")
	drivers := flag.String("drivers", "s3,fs", "body store drivers to measure")
	clients := flag.String("clients", "1,8,32", "concurrent client counts")
	mode := flag.String("mode", "append", "append: append throughput and latency; etcd-bytes: etcd bytes per stored message")
	n := flag.Int("n", 2000, "etcd-bytes: messages stored per corpus")
	seed := flag.Int64("seed", 1, "etcd-bytes: seed of the mailcorpus corpus")
	only := flag.String("corpus", "", "etcd-bytes: run only this corpus (mailcorpus, 1, 10); default all three")
	flag.Parse()
	var err error
	switch *mode {
	case "append":
		err = run(*messages, *size, strings.Split(*drivers, ","), *clients)
	case "etcd-bytes":
		err = runEtcdBytes(*n, 8, *seed, *only)
	default:
		err = fmt.Errorf("unknown -mode %q (want append or etcd-bytes)", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(messages, size int, drivers []string, clientList string) error {
	dir, err := os.MkdirTemp("", "mailfleet-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	etcd, err := engines.StartEtcd(dir+"/etcd", 1)
	if err != nil {
		return err
	}
	defer etcd.Stop()
	fmt.Printf("storage append benchmark: %d-byte messages, %d per run, GOMAXPROCS=%d, etcd single member (fsync on), loopback\n",
		size, messages, runtime.GOMAXPROCS(0))
	fmt.Printf("%-6s %-8s %10s %10s %10s\n", "driver", "clients", "msgs/s", "p50", "p99")
	for _, driver := range drivers {
		var blobs blobstore.Store
		switch driver {
		case "s3":
			minio, err := engines.StartMinIO(dir + "/minio")
			if err != nil {
				return err
			}
			defer minio.Stop()
			bucket, err := minio.NewBucket(context.Background())
			if err != nil {
				return err
			}
			blobs, err = blobstore.NewS3(blobstore.S3Config{Endpoint: minio.Endpoint, AccessKey: minio.AccessKey, SecretKey: minio.SecretKey, Bucket: bucket})
			if err != nil {
				return err
			}
		case "fs":
			if blobs, err = blobstore.NewFS(dir + "/fs"); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown driver %q", driver)
		}
		for _, cs := range strings.Split(clientList, ",") {
			var n int
			fmt.Sscan(cs, &n)
			if err := measure(etcd, blobs, driver, n, messages, size); err != nil {
				return err
			}
		}
	}
	return nil
}

func measure(etcd *engines.EtcdCluster, blobs blobstore.Store, driver string, clients, messages, size int) error {
	ctx := context.Background()
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	prefix := fmt.Sprintf("/bench-%s-%d/", driver, clients)
	conn, stop, err := startStorage(cli, prefix, blobs)
	if err != nil {
		return err
	}
	defer stop()
	accounts := storagev1.NewAccountServiceClient(conn)
	mailboxes := storagev1.NewMailboxServiceClient(conn)
	msgs := storagev1.NewMessageServiceClient(conn)
	if _, err := accounts.CreateDomain(ctx, &storagev1.CreateDomainRequest{Name: "bench.test"}); err != nil {
		return err
	}
	type target struct{ account, inbox string }
	var targets []target
	for i := 0; i < clients; i++ {
		acc, err := accounts.CreateAccount(ctx, &storagev1.CreateAccountRequest{Address: fmt.Sprintf("u%d@bench.test", i), Password: "bench-secret"})
		if err != nil {
			return err
		}
		mb, err := mailboxes.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: acc.Account.Id, Name: "INBOX"})
		if err != nil {
			return err
		}
		targets = append(targets, target{acc.Account.Id, mb.Mailbox.Id})
	}
	body := make([]byte, size)
	copy(body, "From: bench@example.org\r\nTo: user@bench.test\r\nSubject: benchmark\r\n\r\n")
	for i := 80; i < size; i++ {
		body[i] = 'a' + byte(i%26)
		if i%78 == 0 {
			body[i-1], body[i] = '\r', '\n'
		}
	}
	latencies := make([]time.Duration, messages)
	var next int
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(tg target) {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= messages {
					return
				}
				t0 := time.Now()
				err := appendOnce(ctx, msgs, tg.account, tg.inbox, body)
				latencies[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}(targets[c])
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return firstErr
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	fmt.Printf("%-6s %-8d %10.0f %10s %10s\n", driver, clients, float64(messages)/elapsed.Seconds(),
		latencies[messages/2].Round(10*time.Microsecond), latencies[messages*99/100].Round(10*time.Microsecond))
	return nil
}

// startStorage serves the storage API on a loopback port and returns a
// connection to it and a function that stops both.
func startStorage(cli *clientv3.Client, prefix string, blobs blobstore.Store) (*grpc.ClientConn, func(), error) {
	svc := service.New(cli, prefix, blobs, service.DefaultConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := grpc.NewServer()
	storagev1.RegisterAccountServiceServer(srv, svc)
	storagev1.RegisterMessageServiceServer(srv, svc)
	storagev1.RegisterMailboxServiceServer(srv, svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	go srv.Serve(ln)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		srv.Stop()
		return nil, nil, err
	}
	return conn, func() { conn.Close(); srv.Stop() }, nil
}

func appendOnce(ctx context.Context, msgs storagev1.MessageServiceClient, account, inbox string, body []byte) error {
	stream, err := msgs.AppendMessage(ctx)
	if err != nil {
		return err
	}
	stream.Send(&storagev1.AppendMessageRequest{Part: &storagev1.AppendMessageRequest_Metadata_{Metadata: &storagev1.AppendMessageRequest_Metadata{
		AccountId: account, MailboxId: inbox, SizeHint: uint64(len(body))}}})
	stream.Send(&storagev1.AppendMessageRequest{Part: &storagev1.AppendMessageRequest_Chunk{Chunk: &storagev1.BodyChunk{Data: body}}})
	_, err = stream.CloseAndRecv()
	return err
}
