// Package service implements the storage.v1 gRPC API on etcd (index) and a
// blobstore (bodies).
//
// Implementation notes — the rules a change here must keep:
//   - A body is written to the blobstore before the etcd transaction that
//     references it; an answer that says "stored" is sent only after that
//     transaction committed. A body is deleted only by the sweeper, or right
//     away when the transaction definitely failed (never when its outcome is
//     uncertain).
//   - Every change to a mailbox's messages puts the mailbox record in the same
//     transaction, with UIDNEXT/HIGHESTMODSEQ/counters updated, conditioned on
//     the record's ModRevision (etcdtx). The quota record moves in that
//     transaction too. So UIDs and modseqs strictly increase, from any replica.
//   - Changes of one account go through the committer, which batches concurrent
//     changes of the same account into one transaction.
//   - Body reference counts (bodies/<key>) change in the transaction that adds
//     or removes a reference; at zero the key goes and the body is listed in
//     a freed/ record, which the sweeper acts on after the grace period.
//   - Index entries (version 2, entry.go) hold only what changes; a body's
//     envelope and MIME tree are its summary object (summary.go).
//   - Every key is scoped to one account, except the domain list, the address
//     directory, body references and the queue (see package keys).
package service

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/authz"
	"github.com/mailfleet/mailfleet/services/storage/internal/blobstore"
	"github.com/mailfleet/mailfleet/services/storage/internal/keys"
	"github.com/mailfleet/mailfleet/services/storage/internal/password"
)

// Config tunes the service.
type Config struct {
	// MaxMessageSize is the largest body accepted, in bytes.
	MaxMessageSize int64
	// SweepGrace is how long a body stays after its last reference went away
	// (and how old an unreferenced object must be before the orphan scan
	// removes it). It must exceed the longest possible request.
	SweepGrace time.Duration
	// QueueLifetime is how long an outbound message is retried by default.
	QueueLifetime time.Duration
	// StagingTTL is how long a bulk COPY or MOVE holds its destination past
	// each step (staging.go).
	StagingTTL time.Duration
	// AuthCacheTTL keeps successful logins for this long (0 = no cache).
	AuthCacheTTL time.Duration
	// SummaryCacheBytes bounds the replica's cache of message summaries
	// (envelopes and MIME trees, summary.go).
	SummaryCacheBytes int
	// LoginFailures failed logins of one username or client address within
	// LoginFailureWindow lock it out, cluster-wide, for LoginLockout
	// (0 = no cluster-wide limit).
	LoginFailures      int
	LoginFailureWindow time.Duration
	LoginLockout       time.Duration
	// ExpungeRecords and ExpungeRetention bound each mailbox's expunge
	// records (vanished.go): the oldest go once there are more than
	// ExpungeRecords or once they are older than ExpungeRetention.
	ExpungeRecords   int
	ExpungeRetention time.Duration
	// MinPasswordLength is the fewest characters a new password may have
	// (0: any non-empty password).
	MinPasswordLength int
}

// DefaultConfig returns production defaults.
func DefaultConfig() Config {
	return Config{
		MaxMessageSize: 50 << 20,
		SweepGrace:     time.Hour,
		QueueLifetime:  5 * 24 * time.Hour,
		StagingTTL:     2 * time.Minute,
		AuthCacheTTL:   5 * time.Minute,
		// About 150 000 messages' summaries.
		SummaryCacheBytes: 64 << 20,
		// Above the frontends' per-pod limit (10), so that one pod's own
		// lockout acts first and this one bounds what N pods allow.
		LoginFailures:      30,
		LoginFailureWindow: 5 * time.Minute,
		LoginLockout:       15 * time.Minute,
		ExpungeRecords:     1000,
		ExpungeRetention:   30 * 24 * time.Hour,
		// NIST SP 800-63B's minimum for passwords a user chooses.
		MinPasswordLength: 8,
	}
}

// Server implements every storage.v1 service.
type Server struct {
	storagev1.UnimplementedAccountServiceServer
	storagev1.UnimplementedMailboxServiceServer
	storagev1.UnimplementedMessageServiceServer
	storagev1.UnimplementedDeliveryServiceServer
	storagev1.UnimplementedWatchServiceServer
	storagev1.UnimplementedQueueServiceServer
	storagev1.UnimplementedMaintenanceServiceServer

	etcd      *clientv3.Client
	keys      keys.Layout
	blobs     blobstore.Store
	cfg       Config
	log       *slog.Logger
	committer *committer
	authCache *password.Cache
	leases    *leaseKeeper
	summaries *summaryCache
	// recipients caches the address directory (recipients.go); it keeps
	// nothing until RunRecipientWatch runs.
	recipients *recipientCache
	// uploadKeys hands out body keys with registered intents (intents.go).
	uploadKeys *uploadKeys
	sessions   *authz.Sessions // nil: logins get no session token

	// draining ends when the process starts shutting down: Watch streams,
	// which never finish by themselves, end then so that graceful stop
	// waits only for requests that do.
	draining  context.Context
	drainDone context.CancelFunc
}

// New builds a Server. prefix is the etcd key prefix (keys.DefaultPrefix if empty).
func New(etcd *clientv3.Client, prefix string, blobs blobstore.Store, cfg Config, log *slog.Logger) *Server {
	if prefix == "" {
		prefix = keys.DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if cfg.StagingTTL <= 0 {
		cfg.StagingTTL = DefaultConfig().StagingTTL
	}
	s := &Server{etcd: etcd, keys: keys.Layout{Prefix: prefix}, blobs: blobs, cfg: cfg, log: log}
	if cfg.SummaryCacheBytes <= 0 {
		cfg.SummaryCacheBytes = DefaultConfig().SummaryCacheBytes
	}
	s.summaries = newSummaryCache(cfg.SummaryCacheBytes)
	s.committer = newCommitter(etcd)
	s.recipients = newRecipientCache(recipientCacheTTL, recipientCacheEntries)
	s.uploadKeys = &uploadKeys{s: s}
	s.leases = &leaseKeeper{etcd: etcd}
	s.authCache = password.NewCache(cfg.AuthCacheTTL, 100000)
	s.draining, s.drainDone = context.WithCancel(context.Background())
	return s
}

// Drain ends every Watch stream with UNAVAILABLE, telling watchers to resume
// from their last revision on another replica. Call it before the gRPC
// server's GracefulStop.
func (s *Server) Drain() { s.drainDone() }

// Ready reports whether etcd and the body store answer.
func (s *Server) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := s.etcd.Get(ctx, s.keys.Prefix+"readyz", clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	if err := s.blobs.Ping(ctx); err != nil {
		return fmt.Errorf("body store: %w", err)
	}
	return nil
}

// newID returns a random id: 16 hex digits.
func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newBodyKey returns a new, never reused body key: 80 random bits in a day
// directory (which keeps the fs driver's directories small). It is short
// because every index entry and reference record carries it.
func newBodyKey(now time.Time) string {
	b := make([]byte, 10)
	rand.Read(b)
	return now.UTC().Format("20060102/") + bodyKeyEncoding.EncodeToString(b)
}

// bodyKeyEncoding is lower-case base32: safe on case-insensitive file systems.
var bodyKeyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// marshal encodes a record for etcd; proto.Marshal of our types cannot fail
// except for invalid UTF-8, which every writer cleans first.
func marshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", m, err))
	}
	return b
}
