// Package storeclient is the frontends' connection to the storage tier.
package storeclient

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver/dns"

	"github.com/mailfleet/mailfleet/pkg/tlsreload"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Client bundles the storage API clients over one connection.
type Client struct {
	conn      *grpc.ClientConn
	Accounts  storagev1.AccountServiceClient
	Mailboxes storagev1.MailboxServiceClient
	Messages  storagev1.MessageServiceClient
	Watch     storagev1.WatchServiceClient
	Delivery  storagev1.DeliveryServiceClient
	Queue     storagev1.QueueServiceClient
	health    healthpb.HealthClient
	// Timeout bounds every unary call.
	Timeout time.Duration
}

// TLSFlags are the client side of mTLS between tiers: every frontend and
// mailctl registers them (--storage-ca, --storage-cert, --storage-key). The
// certificate is the tier's identity: the storage tier allows each tier
// only its own calls.
type TLSFlags struct {
	CA, Cert, Key string
	// Insecure: plaintext to a storage tier run with --insecure-plaintext-grpc.
	Insecure bool
}

// Register adds the flags to fs.
func (f *TLSFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.CA, "storage-ca", "", "CA of the internal certificates (required): storage is reached over mutual TLS")
	fs.StringVar(&f.Cert, "storage-cert", "", "this tier's client certificate (CN mailfleet-<role>), reloaded on change (required)")
	fs.StringVar(&f.Key, "storage-key", "", "key of the client certificate (required)")
	fs.BoolVar(&f.Insecure, "insecure-plaintext-storage", false, "INSECURE: talk to a storage tier run with --insecure-plaintext-grpc, without TLS")
}

// Config returns the client TLS config, or nil with --insecure-plaintext-storage.
func (f *TLSFlags) Config(log *slog.Logger) (*tls.Config, error) {
	if f.Insecure {
		if f.CA != "" || f.Cert != "" {
			return nil, errors.New("--insecure-plaintext-storage and --storage-ca/--storage-cert exclude each other")
		}
		log.Warn("INSECURE: talking to storage without TLS (--insecure-plaintext-storage)")
		return nil, nil
	}
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return nil, errors.New("storage is reached over mutual TLS: --storage-ca, --storage-cert and --storage-key are required " +
			"(--insecure-plaintext-storage for a storage tier run with --insecure-plaintext-grpc)")
	}
	cfg, err := tlsreload.MutualClient(f.CA, f.Cert, f.Key, log)
	if err != nil {
		return nil, err
	}
	// Only the storage tier's certificate: a stolen certificate of another
	// tier (signed by the same CA) must not pass for storage, also when
	// storage is dialled by IP address, where no name is checked.
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := verify(cs); err != nil {
			return err
		}
		if cn := cs.PeerCertificates[0].Subject.CommonName; cn != StorageCommonName {
			return fmt.Errorf("storage's certificate names %q, want %q", cn, StorageCommonName)
		}
		return nil
	}
	return cfg, nil
}

// StorageCommonName is the Subject CN of the storage tier's certificate.
const StorageCommonName = "mailfleet-storage"

// Message-size limits between the tiers, set on both ends (the storage
// server receives up to MaxSendMsgSize and sends up to MaxRecvMsgSize).
//
// The largest response is a ListMessages page: the storage tier cuts it at
// 1 MiB of entries, or at one entry if that alone is larger (an entry is an
// etcd value, under etcd's 1.5 MiB request limit); MaxRecvMsgSize is that
// with room to spare.
//
// Requests carry 64 KiB body chunks, names and UID sets. A UID set is the
// largest: at most uidRangeBytes per range, so MaxSendMsgSize holds a set of
// MaxUIDSetRanges ranges (about 590 000 scattered UIDs: every message of a
// mailbox six times the 100 000 we size for).
const (
	MaxRecvMsgSize = 8 << 20
	MaxSendMsgSize = 8 << 20
	// uidRangeBytes is one encoded UIDRange in a UIDSet: two 5-byte varints
	// with their tags, plus the range's own tag and length.
	uidRangeBytes   = 2*(1+5) + 2
	MaxUIDSetRanges = (MaxSendMsgSize - 64<<10) / uidRangeBytes
)

var dnsIntervalOnce sync.Once

// Dial connects to the storage tier at addr (over mTLS when tlsCfg is not
// nil). This is the one place that chooses a storage endpoint: routing
// accounts to cells would start here.
func Dial(addr string, tlsCfg *tls.Config) (*Client, error) {
	// addr is usually a headless Service whose name resolves to every storage
	// pod. When a pod goes away its connection breaks and gRPC asks DNS again
	// for the current pods; by default no sooner than 30 s after the last
	// time, which in a rolling restart is 30 s without a working replica.
	dnsIntervalOnce.Do(func() { dns.SetMinResolutionInterval(time.Second) })
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// A gRPC Service of several storage pods behind one name: spread calls.
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxRecvMsgSize), grpc.MaxCallSendMsgSize(MaxSendMsgSize)),
		// Calls made for a logged-in user carry its session token.
		grpc.WithChainUnaryInterceptor(sessionUnary),
		grpc.WithChainStreamInterceptor(sessionStream),
	)
	if err != nil {
		return nil, err
	}
	return &Client{
		conn:      conn,
		Accounts:  storagev1.NewAccountServiceClient(conn),
		Mailboxes: storagev1.NewMailboxServiceClient(conn),
		Messages:  storagev1.NewMessageServiceClient(conn),
		Watch:     storagev1.NewWatchServiceClient(conn),
		Delivery:  storagev1.NewDeliveryServiceClient(conn),
		Queue:     storagev1.NewQueueServiceClient(conn),
		health:    healthpb.NewHealthClient(conn),
		Timeout:   30 * time.Second,
	}, nil
}

// Ready checks that the storage tier answers (for a frontend's /readyz).
func (c *Client) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := c.health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("storage: %v", resp.Status)
	}
	return nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// BodyReader streams a message body (or a range of it).
func (c *Client) BodyReader(ctx context.Context, account, mailboxID string, uid uint32, offset, length uint64) (io.ReadCloser, error) {
	return MessageBodyReader(ctx, c.Messages, account, mailboxID, uid, offset, length)
}

// MessageBodyReader streams a message body (or a range of it) through any
// MessageService client (mailctl has its own connection).
func MessageBodyReader(ctx context.Context, messages storagev1.MessageServiceClient, account, mailboxID string, uid uint32, offset, length uint64) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := messages.GetMessageBody(ctx, &storagev1.GetMessageBodyRequest{
		AccountId: account, MailboxId: mailboxID, Uid: uid, Offset: offset, Length: length})
	if err != nil {
		cancel()
		return nil, err
	}
	// The first response carries the entry: it also tells us the message exists.
	first, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, err
	}
	return &bodyReader{recv: chunksOf(stream), cancel: cancel, buf: first.GetChunk().GetData()}, nil
}

// QueueBodyReader streams the body of a queue item.
func (c *Client) QueueBodyReader(ctx context.Context, id string) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.Queue.GetQueueBody(ctx, &storagev1.GetQueueBodyRequest{Id: id})
	if err != nil {
		cancel()
		return nil, err
	}
	return &bodyReader{recv: chunksOf(stream), cancel: cancel}, nil
}

// chunksOf reads the body chunks of a streamed response.
func chunksOf[T interface{ GetChunk() *storagev1.BodyChunk }](stream interface{ Recv() (T, error) }) func() (*storagev1.BodyChunk, error) {
	return func() (*storagev1.BodyChunk, error) {
		resp, err := stream.Recv()
		return resp.GetChunk(), err
	}
}

// bodyReader turns a stream of body chunks into an io.Reader.
type bodyReader struct {
	recv   func() (*storagev1.BodyChunk, error)
	cancel context.CancelFunc
	buf    []byte
	err    error
}

func (r *bodyReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		chunk, err := r.recv()
		if err != nil {
			r.err = err
			continue
		}
		r.buf = chunk.GetData()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *bodyReader) Close() error {
	r.cancel()
	return nil
}

// UIDSetOf builds a UID set from a sorted list, merging runs into ranges.
// A request carries at most MaxUIDSetRanges ranges (MaxSendMsgSize): a
// caller whose selection can be larger must split it.
func UIDSetOf(uids []uint32) *storagev1.UIDSet {
	set := &storagev1.UIDSet{}
	for _, u := range uids {
		if n := len(set.Ranges); n > 0 && set.Ranges[n-1].Last+1 == u {
			set.Ranges[n-1].Last = u
			continue
		}
		set.Ranges = append(set.Ranges, &storagev1.UIDRange{First: u, Last: u})
	}
	return set
}

// Deliver streams one message to the storage tier (metadata, then the body
// in 64 KiB chunks) and returns its per-recipient answer.
func (c *Client) Deliver(ctx context.Context, meta *storagev1.DeliverRequest_Metadata, body io.Reader) (*storagev1.DeliverResponse, error) {
	stream, err := c.Delivery.Deliver(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&storagev1.DeliverRequest{Part: &storagev1.DeliverRequest_Metadata_{Metadata: meta}}); err != nil {
		return stream.CloseAndRecv()
	}
	buf := make([]byte, 64<<10)
	for {
		n, rerr := io.ReadFull(body, buf)
		if n > 0 {
			chunk := &storagev1.BodyChunk{Data: append([]byte(nil), buf[:n]...)}
			if err := stream.Send(&storagev1.DeliverRequest{Part: &storagev1.DeliverRequest_Chunk{Chunk: chunk}}); err != nil {
				return stream.CloseAndRecv() // the server answered early; its answer says why
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return stream.CloseAndRecv()
		}
		if rerr != nil {
			return nil, rerr
		}
	}
}
