// Package etcdmaint keeps the cell's etcd cluster within its space: every
// storage replica exports each member's database size and the cluster's alarms
// as metrics, and one replica at a time (elected in etcd) defragments members
// whose database holds much free space and disarms a NOSPACE alarm once
// defragmentation has made room again.
//
// Implementation notes:
//   - Compaction (etcd's own --auto-compaction-*) frees pages inside the
//     database file; only defragmentation gives them back, and etcd's quota
//     counts the file's pages, free ones included. So a cell that hit its
//     quota (NOSPACE: etcd refuses every write) needs compaction, then
//     defragmentation, then the alarm disarmed — the order of etcd's own
//     recovery procedure.
//   - Defragmenting blocks the member's reads and writes while it rewrites
//     its database (seconds per GiB). One member at a time, followers first and
//     the Raft leader last, and only while every member answers: with a member
//     down, blocking another one would cost the cluster its quorum.
//   - The election is held for the life of the process, not taken per round:
//     under NOSPACE etcd refuses the lease grant and the write a new campaign
//     needs, but keeps existing leases alive. A replica elected (or waiting in
//     line) before the alarm can still recover the cell.
package etcdmaint

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Config says how often to look and when to act.
type Config struct {
	// StatusInterval is how often every replica reads the members' status and
	// the alarms for the metrics (0: never).
	StatusInterval time.Duration
	// DefragInterval is the time between two defragmentation rounds of the
	// elected replica (0: no defragmentation, no election).
	DefragInterval time.Duration
	// MinFree is the free space (DbSize − DbSizeInUse) from which a member is
	// defragmented.
	MinFree int64
	// Pause is the rest between two members, after the previous one caught up.
	Pause time.Duration
	// DefragTimeout bounds the defragmentation of one member.
	DefragTimeout time.Duration
	// ElectionKey is the prefix of the election's keys.
	ElectionKey string
}

// DefaultConfig is what the storage binary uses unless told otherwise.
//
// MinFree: bbolt reuses free pages for new writes, so free space costs only
// disk and, near the quota, room; defragmenting costs a blocked member. 256 MiB
// is an eighth of etcd's default 2 GiB quota (a sixteenth of the chart's
// 4 GiB): below it the gain does not pay for the blocking.
func DefaultConfig() Config {
	return Config{
		StatusInterval: 30 * time.Second,
		DefragInterval: time.Hour,
		MinFree:        256 << 20,
		Pause:          10 * time.Second,
		// etcd rewrites the whole live database; on slow disks an 8 GiB
		// one takes minutes.
		DefragTimeout: 10 * time.Minute,
	}
}

// Maintainer exports etcd's sizes and alarms and runs the defragmentation loop.
type Maintainer struct {
	etcd    *clientv3.Client
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	// wake tells the elected loop to look now (a NOSPACE alarm was seen).
	wake chan struct{}

	mu        sync.Mutex
	noSpaceOn bool // last seen state, to log the alarm's changes once
}

// New returns a Maintainer whose metrics are registered on reg.
func New(etcd *clientv3.Client, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Maintainer {
	return &Maintainer{etcd: etcd, cfg: cfg, log: log, metrics: newMetrics(reg), wake: make(chan struct{}, 1)}
}

// Run refreshes the metrics and, if enabled, takes part in the defragmentation
// election until ctx ends.
func (m *Maintainer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if m.cfg.StatusInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer m.recoverPanic("etcd status loop")
			m.statusLoop(ctx)
		}()
	}
	if m.cfg.DefragInterval > 0 {
		func() {
			defer m.recoverPanic("etcd defragmentation loop")
			m.electionLoop(ctx)
		}()
	}
	wg.Wait()
}

func (m *Maintainer) recoverPanic(what string) {
	if r := recover(); r != nil {
		m.log.Error(what+" panicked", "panic", r)
	}
}

func (m *Maintainer) statusLoop(ctx context.Context) {
	for {
		if _, alarms, err := m.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			m.log.Warn("reading etcd status failed", "err", err)
		} else if hasAlarm(alarms, nospace) {
			select {
			case m.wake <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.cfg.StatusInterval):
		}
	}
}

// electionLoop campaigns, and while elected defragments every DefragInterval
// (sooner under a NOSPACE alarm). It campaigns again if its session ends.
func (m *Maintainer) electionLoop(ctx context.Context) {
	for ctx.Err() == nil {
		err := m.lead(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, rpctypes.ErrNoSpace) {
			m.log.Error("cannot join the etcd defragmentation election: etcd is out of space (NOSPACE); "+
				"a replica elected before the alarm recovers the cell, else follow the NOSPACE procedure of docs/sizing.md", "err", err)
		} else {
			m.log.Warn("etcd defragmentation election", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(m.cfg.DefragInterval, 30*time.Second)):
		}
	}
}

// lead waits to be elected, then runs rounds until ctx ends or the session is lost.
func (m *Maintainer) lead(ctx context.Context) error {
	const ttl = 30
	gctx, cancel := context.WithTimeout(ctx, callTimeout)
	lease, err := m.etcd.Grant(gctx, ttl)
	cancel()
	if err != nil {
		return err
	}
	// The session outlives ctx so that Close can revoke its lease at
	// shutdown: the next replica takes over at once, not after the TTL.
	session, err := concurrency.NewSession(m.etcd, concurrency.WithLease(lease.ID), concurrency.WithTTL(ttl),
		concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return err
	}
	defer session.Close()
	identity, _ := os.Hostname()
	election := concurrency.NewElection(session, m.cfg.ElectionKey)
	if err := election.Campaign(ctx, identity); err != nil {
		return err
	}
	select {
	case <-session.Done():
		return errors.New("etcd session of the defragmentation election ended while campaigning")
	default:
	}
	leadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-session.Done():
			cancel()
		case <-leadCtx.Done():
		}
	}()
	m.metrics.leader.Set(1)
	defer m.metrics.leader.Set(0)
	m.log.Info("elected to defragment etcd", "interval", m.cfg.DefragInterval.String(), "min_free", m.cfg.MinFree)
	for {
		if err := m.Defragment(leadCtx); err != nil && leadCtx.Err() == nil {
			m.log.Warn("etcd defragmentation round failed", "err", err)
		}
		select {
		case <-leadCtx.Done():
			if ctx.Err() == nil {
				return errors.New("etcd session of the defragmentation election ended")
			}
			return nil
		case <-time.After(m.cfg.DefragInterval):
		case <-m.wake:
		}
	}
}
