package service

import (
	"context"
	"errors"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/protobuf/proto"

	"github.com/mailfleet/mailfleet/services/storage/internal/blobstore"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// SweepStats says what one sweep removed.
type SweepStats struct {
	Unreferenced int // bodies whose last reference went away over a grace period ago
	Orphans      int // bodies never referenced (a crash between upload and commit)
}

// RunSweeper sweeps every interval, and scans for orphans every orphanEvery,
// until ctx ends. Only one replica sweeps at a time (an etcd lock).
func (s *Server) RunSweeper(ctx context.Context, interval, orphanEvery time.Duration) {
	lastOrphanScan := time.Now() // a fresh replica waits before the first full scan
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		scan := time.Since(lastOrphanScan) >= orphanEvery
		stats, err := s.Sweep(ctx, scan)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("sweep failed", "err", err)
			continue
		}
		if scan {
			lastOrphanScan = time.Now()
		}
		if stats.Unreferenced+stats.Orphans > 0 {
			s.log.Info("swept bodies", "unreferenced", stats.Unreferenced, "orphans", stats.Orphans)
		}
	}
}

// Sweep runs one pass if no other replica is sweeping: it deletes bodies
// unreferenced for longer than the grace period and, with scanOrphans, bodies
// in the store that nothing references and that are older than the grace.
func (s *Server) Sweep(ctx context.Context, scanOrphans bool) (SweepStats, error) {
	var stats SweepStats
	session, err := concurrency.NewSession(s.etcd, concurrency.WithTTL(30), concurrency.WithContext(ctx))
	if err != nil {
		return stats, err
	}
	defer session.Close()
	lock := concurrency.NewMutex(session, s.keys.SweeperLock())
	if err := lock.TryLock(ctx); err != nil {
		if errors.Is(err, concurrency.ErrLocked) {
			return stats, nil
		}
		return stats, err
	}
	defer lock.Unlock(context.WithoutCancel(ctx))

	cutoff := time.Now().Add(-s.cfg.SweepGrace)
	markers, err := s.etcd.Get(ctx, s.keys.GCMarkers(), clientv3.WithPrefix())
	if err != nil {
		return stats, err
	}
	for _, kv := range markers.Kvs {
		m := &records.GCMarker{}
		if err := proto.Unmarshal(kv.Value, m); err != nil {
			return stats, err
		}
		if m.UnreferencedAt.AsTime().After(cutoff) {
			continue
		}
		key := strings.TrimPrefix(string(kv.Key), s.keys.GCMarkers())
		// A body with no references never gains one again (copies need a
		// live entry; new mail gets new keys), so deleting is safe.
		if err := s.blobs.Delete(ctx, key); err != nil {
			return stats, err
		}
		resp, err := s.etcd.Txn(ctx).If(lock.IsOwner(), clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(string(kv.Key))).Commit()
		if err != nil {
			return stats, err
		}
		if !resp.Succeeded {
			return stats, errors.New("sweeper lost its lock")
		}
		stats.Unreferenced++
	}
	if !scanOrphans {
		return stats, nil
	}
	var candidates []string
	err = s.blobs.List(ctx, func(info blobstore.Info) error {
		if info.Modified.Before(cutoff) {
			candidates = append(candidates, info.Key)
		}
		return nil
	})
	if err != nil {
		return stats, err
	}
	for len(candidates) > 0 {
		batch := candidates[:min(len(candidates), 60)]
		candidates = candidates[len(batch):]
		var ops []clientv3.Op
		for _, key := range batch {
			ops = append(ops, clientv3.OpGet(s.keys.Body(key), clientv3.WithCountOnly()), clientv3.OpGet(s.keys.GCMarker(key), clientv3.WithCountOnly()))
		}
		resp, err := s.etcd.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return stats, err
		}
		for i, key := range batch {
			if resp.Responses[2*i].GetResponseRange().Count+resp.Responses[2*i+1].GetResponseRange().Count > 0 {
				continue
			}
			if err := s.blobs.Delete(ctx, key); err != nil {
				return stats, err
			}
			s.log.Info("removed orphan body", "body", key)
			stats.Orphans++
		}
	}
	return stats, nil
}
