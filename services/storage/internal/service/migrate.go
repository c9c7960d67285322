package service

import (
	"context"
	"errors"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// Index version 2 (entry.go) is adopted without downtime: every reader takes
// both layouts, every writer writes version 2, and the sweeper's replica
// rewrites the version 1 entries left from before, a bounded number per
// sweep. For each it first makes sure the body's summary object exists
// (computing it from the body), then replaces the entry if it is unchanged
// since it was read. An entry that a change rewrote before the migration
// reached it gets its summary when it is first read (summary.go computes a
// missing one from the body). When a pass finds no version 1 entry left it
// records that in etcd, and later sweeps skip the work.

// indexV2Migration names the mark of a finished migration.
const indexV2Migration = "index-v2"

// migrateBatch is how many entries one migration transaction rewrites.
const migrateBatch = etcdtx.MaxOps / 2

// MigrateIndex rewrites up to budget version 1 index entries as version 2
// and reports how many it rewrote and whether none is left (and the
// migration is recorded as done). The caller holds the sweeper lock (nil:
// the caller is alone, as in mailctl-driven or test runs).
func (s *Server) MigrateIndex(ctx context.Context, lock *concurrency.Mutex, budget int) (migrated int, done bool, err error) {
	mark := s.keys.Migration(indexV2Migration)
	if resp, err := s.etcd.Get(ctx, mark, clientv3.WithCountOnly()); err != nil {
		return 0, false, err
	} else if resp.Count > 0 {
		return 0, true, nil
	}
	accounts, err := s.allAccountIDs(ctx)
	if err != nil {
		return 0, false, err
	}
	clean := true // no version 1 entry seen in this pass
	for _, account := range accounts {
		resp, err := s.etcd.Get(ctx, s.keys.Mailboxes(account), clientv3.WithPrefix())
		if err != nil {
			return migrated, false, err
		}
		for _, kv := range resp.Kvs {
			mb := &storagev1.Mailbox{}
			if err := proto.Unmarshal(kv.Value, mb); err != nil {
				return migrated, false, err
			}
			n, left, err := s.migrateMailbox(ctx, lock, account, mb.Id, budget-migrated)
			migrated += n
			if err != nil {
				return migrated, false, err
			}
			if left {
				clean = false
			}
			if migrated >= budget {
				return migrated, false, nil
			}
		}
	}
	if !clean {
		return migrated, false, nil
	}
	cmp := []clientv3.Cmp{}
	if lock != nil {
		cmp = append(cmp, lock.IsOwner())
	}
	if _, err := s.etcd.Txn(ctx).If(cmp...).Then(clientv3.OpPut(mark, "done")).Commit(); err != nil {
		return migrated, false, err
	}
	s.log.Info("index migration to version 2 finished")
	return migrated, true, nil
}

// migrateMailbox rewrites up to budget version 1 entries of one mailbox;
// left says whether any version 1 entry remains (or was changed meanwhile).
func (s *Server) migrateMailbox(ctx context.Context, lock *concurrency.Mutex, account, mailboxID string, budget int) (migrated int, left bool, err error) {
	from := uint32(1)
	for {
		kvs, next, more, err := s.readEntries(ctx, account, mailboxID, from, ^uint32(0)-1, scanPage, 0)
		if err != nil {
			return migrated, true, err
		}
		var batch []clientv3.Op
		var cmps []clientv3.Cmp
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			if lock != nil {
				cmps = append(cmps, lock.IsOwner())
			}
			resp, err := s.etcd.Txn(ctx).If(cmps...).Then(batch...).Commit()
			if err != nil {
				return err
			}
			if resp.Succeeded {
				migrated += len(batch)
			} else {
				left = true // changed meanwhile (or the lock is lost): the next pass
			}
			batch, cmps = nil, nil
			return nil
		}
		for _, kv := range kvs {
			if !isEntryV1(kv.Value) {
				continue
			}
			if migrated+len(batch) >= budget {
				return migrated, true, flush()
			}
			m, err := decodeEntryKV(kv.Key, kv.Value)
			if err != nil {
				return migrated, true, err
			}
			if _, err := s.summary(ctx, m.BodyKey); err != nil {
				if errors.Is(ctx.Err(), context.Canceled) {
					return migrated, true, err
				}
				s.log.Warn("index migration: no summary for a body; entry left as it is", "body", m.BodyKey, "err", err)
				left = true
				continue
			}
			batch = append(batch, clientv3.OpPut(string(kv.Key), string(encodeEntry(m))))
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
			if len(batch) == migrateBatch {
				if err := flush(); err != nil {
					return migrated, true, err
				}
			}
		}
		if err := flush(); err != nil {
			return migrated, true, err
		}
		if !more {
			return migrated, left, nil
		}
		from = next
	}
}

// allAccountIDs lists every account, from the address directory (small:
// one key per address) rather than the accounts/ tree, which holds every
// index entry.
func (s *Server) allAccountIDs(ctx context.Context) ([]string, error) {
	resp, err := s.etcd.Get(ctx, s.keys.Addresses(), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, kv := range resp.Kvs {
		addr := &records.AddressRecord{}
		if err := proto.Unmarshal(kv.Value, addr); err != nil {
			return nil, err
		}
		if addr.Kind == records.AddressRecord_KIND_PRIMARY {
			ids = append(ids, addr.AccountId)
		}
	}
	return ids, nil
}
