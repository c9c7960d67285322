// Package queue runs the outbound queue: it leases due items from the
// storage tier, delivers them to the recipients' servers over SMTP, and
// records per-recipient outcomes. Any number of runners may run (one per
// submission pod): a lease makes an item theirs alone; a runner that dies
// stops renewing, and another picks the item up when the lease expires.
//
// A runner is a pool of workers fed continuously: leased items are split into
// one job per destination (recipient domain), and a worker that becomes free
// takes the next job whose destination is below its concurrency limit. A slow
// or tarpitting destination thus holds at most that many workers, and items
// for it beyond a small backlog go back to the queue untried (Release), so
// that it never fills the pod's share of leased items either.
//
// Delivery is at least once: a runner that dies after the remote server
// said 250 but before recording it makes another runner send it again, as
// with every MTA.
package queue

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailfleet/mailfleet/pkg/storeclient"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Config tunes a runner.
type Config struct {
	// Hostname is sent in EHLO and names the reporting MTA in DSNs.
	Hostname string
	// Workers is how many deliveries one runner makes at once.
	Workers int
	// DestinationConcurrency bounds the deliveries to one destination (a
	// recipient domain) at once, in this runner.
	DestinationConcurrency int
	// LeaseTTL is how long an item stays ours without renewal.
	LeaseTTL time.Duration
	// PollInterval is the pause when nothing is due.
	PollInterval time.Duration
	// RemotePort is the SMTP port of remote servers (25).
	RemotePort int
	// Routes maps a domain (or "*") to a fixed next hop "host:port"; other
	// domains are looked up in DNS (MX, then A/AAAA).
	Routes map[string]string
	// Schedule is the back-off between attempts; the last entry repeats.
	// Its first entry is also how long a destination that could not be
	// reached is suspended, and how long an item for a saturated
	// destination waits before it is leased again.
	Schedule []time.Duration
	// ConnectTimeout bounds one connection attempt; CommandTimeout one
	// SMTP exchange.
	ConnectTimeout time.Duration
	CommandTimeout time.Duration
	// DelayWarning is the age after which the sender is told, once, that
	// the message is still not delivered (RFC 3464 Action: delayed); 0: never.
	DelayWarning time.Duration
	// MTASTS applies the recipient domains' MTA-STS policies (RFC 8461).
	MTASTS bool
	// PolicyPort is the HTTPS port of MTA-STS policy hosts (443; tests
	// point it at a loopback server).
	PolicyPort int
	// RootCAs verifies the certificates of MTA-STS policy hosts and of MX
	// hosts under an MTA-STS policy; nil: the system's roots.
	RootCAs  *x509.CertPool
	Observer Observer
	Logger   *slog.Logger
}

// Observer is told about attempts, for metrics.
type Observer interface {
	// Attempt counts one recipient's attempt to a destination: delivered,
	// deferred or failed.
	Attempt(destination, result string)
	// Bounced counts a recipient for whom a DSN was sent.
	Bounced(destination string)
	// Delayed counts a delay DSN (Action: delayed).
	Delayed()
	// MTASTS counts an MX that did not satisfy a policy (mode testing or
	// enforce; reason mx_mismatch, starttls or certificate).
	MTASTS(mode, reason string)
}

// Resolver is the DNS the runner needs (dnsresolver.Resolver).
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Runner delivers queued mail.
type Runner struct {
	cfg      Config
	store    *storeclient.Client
	resolver Resolver
	sts      *stsCache
	sched    *scheduler
	// finishing tracks items finished outside the workers (nothing to
	// deliver), so that Run returns after them.
	finishing sync.WaitGroup
}

// New returns a runner.
func New(store *storeclient.Client, resolver Resolver, cfg Config) *Runner {
	if cfg.Workers == 0 {
		cfg.Workers = 32
	}
	if cfg.DestinationConcurrency == 0 {
		cfg.DestinationConcurrency = 8
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 5 * time.Minute
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.RemotePort == 0 {
		cfg.RemotePort = 25
	}
	if cfg.PolicyPort == 0 {
		cfg.PolicyPort = 443
	}
	if len(cfg.Schedule) == 0 {
		cfg.Schedule = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour}
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = 5 * time.Minute
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{cfg: cfg, store: store, resolver: resolver,
		sts:   newSTSCache(resolver, cfg.PolicyPort, cfg.RootCAs, cfg.Logger),
		sched: newScheduler(cfg.DestinationConcurrency)}
}

type nopObserver struct{}

func (nopObserver) Attempt(string, string) {}
func (nopObserver) Bounced(string)         {}
func (nopObserver) Delayed()               {}
func (nopObserver) MTASTS(string, string)  {}

// DestinationStats is what this runner holds for one destination now.
type DestinationStats struct {
	Waiting, InFlight int
}

// Destinations reports, per destination, the jobs waiting for a worker and
// those being delivered (for the queue gauges).
func (r *Runner) Destinations() map[string]DestinationStats {
	return r.sched.stats()
}

// Run works the queue until ctx ends. Deliveries in flight then finish, and
// items still waiting for a worker go back to the queue.
func (r *Runner) Run(ctx context.Context) {
	var workers sync.WaitGroup
	for range r.cfg.Workers {
		workers.Go(r.work)
	}
	renewCtx, stopRenew := context.WithCancel(context.Background())
	go r.renew(renewCtx)
	maxHeld := 2 * r.cfg.Workers
	for ctx.Err() == nil {
		room := r.sched.waitRoom(ctx, maxHeld)
		if room == 0 {
			break
		}
		n, err := r.lease(ctx, room)
		if err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("leasing queue items failed", "err", err)
		}
		if n == 0 || err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(r.cfg.PollInterval):
			}
		}
	}
	r.sched.close()
	workers.Wait()
	r.finishing.Wait()
	stopRenew()
}

// lease leases up to n items and hands them to the scheduler; it returns
// how many it leased.
func (r *Runner) lease(ctx context.Context, n int) (int, error) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := r.store.Queue.Lease(lctx, &storagev1.LeaseRequest{MaxItems: uint32(min(n, 100)), TtlSeconds: uint32(r.cfg.LeaseTTL / time.Second)})
	if err != nil {
		return 0, err
	}
	for _, item := range resp.Items {
		r.admit(&pendingItem{item: item, leaseID: resp.LeaseId})
	}
	return len(resp.Items), nil
}

// renew keeps the leases of held items alive (a dead runner stops doing
// this, and its items come back to the queue).
func (r *Runner) renew(ctx context.Context) {
	t := time.NewTicker(r.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, id := range r.sched.leases() {
			c, cancel := context.WithTimeout(ctx, r.cfg.LeaseTTL/3)
			if _, err := r.store.Queue.RenewLease(c, &storagev1.RenewLeaseRequest{LeaseId: id}); err != nil && ctx.Err() == nil {
				r.cfg.Logger.Warn("renewing a queue lease failed", "lease", id, "err", err)
			}
			cancel()
		}
	}
}

// pendingItem is a leased item: its jobs, one per destination, and their
// outcomes, recorded once the last job is done.
type pendingItem struct {
	item    *storagev1.QueueItem
	leaseID int64

	mu        sync.Mutex
	left      int
	attempted bool // some job really tried; else the item is released untried
	outcomes  []*storagev1.RecipientOutcome
}

// job delivers one item's recipients at one destination.
type job struct {
	p     *pendingItem
	dest  string
	rcpts []string
}

// localDestination is the destination of items for local mailboxes.
const localDestination = "(local)"

// admit splits an item into jobs and queues them, or gives it back untried
// when every destination it needs is saturated in this runner.
func (r *Runner) admit(p *pendingItem) {
	item := p.item
	var pending []string
	for _, rc := range item.Recipients {
		if rc.State == storagev1.QueueRecipient_STATE_PENDING {
			pending = append(pending, rc.Address)
		}
	}
	if item.ExpiresAt != nil && time.Now().After(item.ExpiresAt.AsTime()) {
		for _, rc := range item.Recipients {
			if rc.State == storagev1.QueueRecipient_STATE_PENDING {
				p.outcomes = append(p.outcomes, &storagev1.RecipientOutcome{Address: rc.Address, Outcome: storagev1.RecipientOutcome_OUTCOME_FAILED,
					Result: "expired after " + time.Since(item.CreatedAt.AsTime()).Round(time.Minute).String() + "; last: " + rc.LastResult})
			}
		}
		pending = nil
	}
	var jobs []*job
	if item.Local && len(pending) > 0 {
		jobs = append(jobs, &job{p: p, dest: localDestination, rcpts: pending})
	} else {
		byDomain := map[string]*job{}
		for _, a := range pending {
			d := domainOf(a)
			if byDomain[d] == nil {
				byDomain[d] = &job{p: p, dest: d}
				jobs = append(jobs, byDomain[d])
			}
			byDomain[d].rcpts = append(byDomain[d].rcpts, a)
		}
	}
	if len(jobs) == 0 {
		// Expired, or only a DSN owed: nothing to deliver.
		p.attempted = true
		r.sched.hold(p.leaseID)
		r.finishing.Go(func() { r.finish(p) })
		return
	}
	p.left = len(jobs)
	if !r.sched.add(jobs) {
		r.release(p, time.Now().Add(r.cfg.Schedule[0]), "destination busy")
	}
}

// work runs jobs until the scheduler closes.
func (r *Runner) work() {
	for {
		j, run, ok := r.sched.next()
		if !ok {
			return
		}
		var out []*storagev1.RecipientOutcome
		if run {
			out = r.runJob(j)
		}
		r.sched.done(j, run)
		p := j.p
		p.mu.Lock()
		p.outcomes = append(p.outcomes, out...)
		p.attempted = p.attempted || run
		p.left--
		last := p.left == 0
		p.mu.Unlock()
		if last {
			r.finish(p)
		}
	}
}

// runJob makes one delivery attempt for a job, protected from panics (a
// panicking delivery defers its recipients).
func (r *Runner) runJob(j *job) (out []*storagev1.RecipientOutcome) {
	defer func() {
		if p := recover(); p != nil {
			r.cfg.Logger.Error("queue delivery panicked", "queue_id", j.p.item.Id, "panic", p)
			out = allOutcomes(j.rcpts, storagev1.RecipientOutcome_OUTCOME_DEFERRED, "451 4.3.0 local error")
		}
	}()
	ctx := context.Background()
	if j.dest == localDestination {
		return r.deliverLocal(ctx, j.p, j.rcpts)
	}
	if until, why := r.sched.suspended(j.dest); !until.IsZero() {
		return allOutcomes(j.rcpts, storagev1.RecipientOutcome_OUTCOME_DEFERRED,
			"4.4.1 delivery to "+j.dest+" temporarily suspended: "+why)
	}
	out, reached := r.deliverDomain(ctx, j.p.item, j.dest, j.rcpts)
	if !reached {
		// No server of the destination answered: leave it alone for a
		// while rather than have every queued item wait for the timeouts.
		r.sched.suspend(j.dest, time.Now().Add(r.cfg.Schedule[0]), out[0].Result)
	}
	return out
}

// release gives an item back to the queue untried, due at next.
func (r *Runner) release(p *pendingItem, next time.Time, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := r.store.Queue.Release(ctx, &storagev1.ReleaseRequest{Id: p.item.Id, LeaseId: p.leaseID, NextAttemptAt: timestamppb.New(next)}); err != nil {
		r.cfg.Logger.Warn("releasing a queue item failed; its lease will expire", "queue_id", p.item.Id, "err", err)
		return
	}
	r.cfg.Logger.Debug("queue item released untried", "queue_id", p.item.Id, "why", why)
}

func domainOf(address string) string {
	return strings.ToLower(address[strings.LastIndexByte(address, '@')+1:])
}

func allOutcomes(rcpts []string, o storagev1.RecipientOutcome_Outcome, result string) []*storagev1.RecipientOutcome {
	var out []*storagev1.RecipientOutcome
	for _, a := range rcpts {
		out = append(out, &storagev1.RecipientOutcome{Address: a, Outcome: o, Result: result})
	}
	return out
}
