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
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// SweepStats says what one sweep removed.
type SweepStats struct {
	Unreferenced int // bodies whose last reference went away over a grace period ago
	Orphans      int // bodies never referenced (a crash between upload and commit)
	Resumed      int // interrupted mailbox or account removals finished
	Migrated     int // version 1 index entries rewritten (migrate.go)
}

// migrateBudget bounds the index entries one sweep migrates, so that the
// sweeper's other work is not held up by a large cell's upgrade.
const migrateBudget = 5000

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
		if errors.Is(err, errHeld) {
			s.log.Info("sweeper waits: a backup or restore is in progress")
			continue
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("sweep failed", "err", err)
			continue
		}
		if scan {
			lastOrphanScan = time.Now()
		}
		if stats.Unreferenced+stats.Orphans+stats.Resumed+stats.Migrated > 0 {
			s.log.Info("swept bodies", "unreferenced", stats.Unreferenced, "orphans", stats.Orphans, "resumed", stats.Resumed, "migrated", stats.Migrated)
		}
	}
}

// Sweep runs one pass if no other replica is sweeping: it deletes bodies
// unreferenced for longer than the grace period and, with scanOrphans, bodies
// in the store that nothing references and that are older than the grace.
// While a backup or restore holds the sweeper it deletes nothing (errHeld).
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

	// A backup or restore in progress needs every body it has not copied
	// yet: no body is deleted until it is done (backup.go).
	held, err := s.sweeperHeld(ctx)
	if err != nil {
		return stats, err
	}
	if held {
		return stats, errHeld
	}
	cutoff := time.Now().Add(-s.cfg.SweepGrace)
	if stats.Unreferenced, err = s.sweepFreed(ctx, lock, cutoff); err != nil {
		return stats, err
	}
	n, err := s.sweepLegacyMarkers(ctx, lock, cutoff)
	stats.Unreferenced += n
	if err != nil {
		return stats, err
	}
	if stats.Resumed, err = s.resumeCleanups(ctx); err != nil {
		return stats, err
	}
	if stats.Migrated, _, err = s.MigrateIndex(ctx, lock, migrateBudget); err != nil {
		return stats, err
	}
	if !scanOrphans {
		return stats, nil
	}
	stats.Orphans, err = s.scanOrphans(ctx, cutoff)
	return stats, err
}

// Deleting a body: the record that freed it (a FreedBodies record, or a
// legacy gc marker) is older than the grace period, so no reader still
// streams it; then, read now, neither a reference record nor an upload
// intent exists for it. A body with neither never gains a reference again
// (keys are never reused; only an upload's own request may bring back a
// record, and only while its intent lives), so the blob is deleted, and
// after it the record that freed it. A crash in between repeats the
// (idempotent) delete at the next sweep.

// sweepFreed deletes the bodies of FreedBodies records older than cutoff.
func (s *Server) sweepFreed(ctx context.Context, lock *concurrency.Mutex, cutoff time.Time) (int, error) {
	resp, err := s.etcd.Get(ctx, s.keys.FreedAll(), clientv3.WithRange(s.keys.FreedBefore(cutoff.UnixMilli())), clientv3.WithLimit(1000))
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, kv := range resp.Kvs {
		rec := &records.FreedBodies{}
		if err := proto.Unmarshal(kv.Value, rec); err != nil {
			return deleted, err
		}
		n, err := s.deleteUnreferenced(ctx, rec.BodyKeys)
		deleted += n
		if err != nil {
			return deleted, err
		}
		if err := s.deleteOwnedKey(ctx, lock, string(kv.Key), kv.ModRevision); err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// sweepLegacyMarkers deletes the bodies of gc/<key> markers (the layout
// before FreedBodies) older than cutoff.
func (s *Server) sweepLegacyMarkers(ctx context.Context, lock *concurrency.Mutex, cutoff time.Time) (int, error) {
	markers, err := s.etcd.Get(ctx, s.keys.GCMarkers(), clientv3.WithPrefix(), clientv3.WithLimit(1000))
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, kv := range markers.Kvs {
		m := &records.GCMarker{}
		if err := proto.Unmarshal(kv.Value, m); err != nil {
			return deleted, err
		}
		if m.UnreferencedAt.AsTime().After(cutoff) {
			continue
		}
		key := strings.TrimPrefix(string(kv.Key), s.keys.GCMarkers())
		n, err := s.deleteUnreferenced(ctx, []string{key})
		deleted += n
		if err != nil {
			return deleted, err
		}
		if err := s.deleteOwnedKey(ctx, lock, string(kv.Key), kv.ModRevision); err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// deleteUnreferenced deletes the blobs of bodyKeys that have neither a
// reference record nor an upload intent now, unless a backup holds the
// sweeper.
//
// The hold is read in the same transaction as the records: a sweep that
// started before a backup's hold existed cannot delete a body that the
// backup's revision references. If no hold exists at the revision S the
// transaction read, a body without a record at S was referenced by no
// revision after S (a missing record never comes back), and every backup's
// revision is after S.
func (s *Server) deleteUnreferenced(ctx context.Context, bodyKeys []string) (int, error) {
	deleted := 0
	for len(bodyKeys) > 0 {
		batch := bodyKeys[:min(len(bodyKeys), (etcdtx.MaxOps-1)/2)] // and the holds
		bodyKeys = bodyKeys[len(batch):]
		var ops []clientv3.Op
		for _, key := range batch {
			ops = append(ops, clientv3.OpGet(s.keys.Body(key), clientv3.WithCountOnly()),
				clientv3.OpGet(s.keys.Upload(key), clientv3.WithCountOnly()))
		}
		resp, err := s.etcd.Txn(ctx).Then(append(ops, s.opHolds())...).Commit()
		if err != nil {
			return deleted, err
		}
		if heldIn(resp) {
			return deleted, errHeld
		}
		for i, key := range batch {
			if resp.Responses[2*i].GetResponseRange().Count+resp.Responses[2*i+1].GetResponseRange().Count > 0 {
				// Referenced again by its own upload's request (see addBodyRefs).
				continue
			}
			if err := s.deleteBlobs(ctx, key); err != nil {
				return deleted, err
			}
			deleted++
		}
	}
	return deleted, nil
}

// deleteOwnedKey deletes key (at modRev) while this replica holds the lock.
func (s *Server) deleteOwnedKey(ctx context.Context, lock *concurrency.Mutex, key string, modRev int64) error {
	resp, err := s.etcd.Txn(ctx).If(lock.IsOwner(), clientv3.Compare(clientv3.ModRevision(key), "=", modRev)).
		Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return errors.New("sweeper lost its lock")
	}
	return nil
}

// scanOrphans deletes objects of the body store that nothing references:
// no reference record, no upload intent, no legacy gc marker. Listing first
// and reading etcd after is safe: an upload's intent exists before its
// object does, and is deleted only in the transaction that creates the
// reference record. The age check only spares fresh objects' readers the
// surprise; safety does not rest on it.
func (s *Server) scanOrphans(ctx context.Context, cutoff time.Time) (int, error) {
	var candidates []string // body keys; a summary stands for its body
	err := s.blobs.List(ctx, func(info blobstore.Info) error {
		if info.Modified.Before(cutoff) {
			candidates = append(candidates, strings.TrimPrefix(info.Key, summaryPrefix))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	orphans := 0
	err = s.eachOrphan(ctx, candidates, func(key string, held bool) error {
		if held {
			return errHeld
		}
		if err := s.deleteBlobs(ctx, key); err != nil {
			return err
		}
		s.log.Info("removed orphan body", "body", key)
		orphans++
		return nil
	})
	return orphans, err
}

// eachOrphan calls fn for each of the body keys that, read now, has no
// reference record, no upload intent and no legacy gc marker (the orphan
// scan's rule), with whether a backup or restore holds the sweeper at that
// reading. It reads in budgeted transactions, the hold in each.
func (s *Server) eachOrphan(ctx context.Context, keys []string, fn func(key string, held bool) error) error {
	for len(keys) > 0 {
		batch := keys[:min(len(keys), (etcdtx.MaxOps-1)/3)] // and the holds
		keys = keys[len(batch):]
		var ops []clientv3.Op
		for _, key := range batch {
			ops = append(ops, clientv3.OpGet(s.keys.Body(key), clientv3.WithCountOnly()),
				clientv3.OpGet(s.keys.Upload(key), clientv3.WithCountOnly()),
				clientv3.OpGet(s.keys.GCMarker(key), clientv3.WithCountOnly()))
		}
		resp, err := s.etcd.Txn(ctx).Then(append(ops, s.opHolds())...).Commit()
		if err != nil {
			return err
		}
		held := heldIn(resp)
		for i, key := range batch {
			var refs int64
			for j := range 3 {
				refs += resp.Responses[3*i+j].GetResponseRange().Count
			}
			if refs > 0 {
				continue
			}
			if err := fn(key, held); err != nil {
				return err
			}
		}
	}
	return nil
}

// errHeld stops a sweep that finds a hold: what it was deleting (and the
// freed record or marker naming it) stays for a later sweep.
var errHeld = errors.New("a backup or restore holds the sweeper")

// opHolds reads whether a backup or restore holds the sweeper; put it last
// in a transaction and ask heldIn.
func (s *Server) opHolds() clientv3.Op {
	return clientv3.OpGet(s.keys.Holds(), clientv3.WithPrefix(), clientv3.WithCountOnly())
}

// heldIn reports what opHolds, the last operation of resp, found.
func heldIn(resp *clientv3.TxnResponse) bool {
	return resp.Responses[len(resp.Responses)-1].GetResponseRange().Count > 0
}
