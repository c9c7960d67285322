package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// All-or-nothing COPY and MOVE of any size (RFC 9051 6.4.7: a failed COPY
// leaves the destination as it was; every other session sees the copies
// arrive at once or not at all).
//
// A COPY or MOVE that needs more than one transaction stages its copies in
// the destination under UIDs at and above UIDNEXT, which no reader lists:
// UIDNEXT bounds what exists. The destination's record holds the staging
// (an operation id, the next staged UID, the modseq the copies carry, an
// expiry renewed by every step); other writers of that mailbox wait while it
// lasts, as behind Dovecot's mailbox lock, so nothing else takes a UID or a
// modseq meanwhile. One transaction then publishes the copies: UIDNEXT moves
// past them, the counters and the quota take them, HIGHESTMODSEQ becomes
// their modseq. A failure before that removes the staged copies again (their
// body references with them). A staging whose operation died expires, and
// the next writer that finds it has it removed.
//
// A MOVE then removes the source messages in steps, as an EXPUNGE does; the
// publishing transaction leaves a cleanup mark (cleanup/<account>/move-<op>)
// so that an interrupted MOVE is finished by the sweeper's replica, not left
// with its messages in both mailboxes.

// busyError says that a mailbox is held by another operation's staging.
type busyError struct {
	account, mailboxID string
	expired            bool
}

func (e *busyError) Error() string {
	return fmt.Sprintf("mailbox %s is busy with a bulk copy or move", e.mailboxID)
}

// checkWritable fails with a busyError if a staging other than opID's holds
// mb. A writer that is not a staging operation passes opID "".
func checkWritable(account string, mb *storagev1.Mailbox, opID string) error {
	st := mb.GetStaging()
	if st == nil || (opID != "" && st.OpId == opID) {
		return nil
	}
	return &busyError{account: account, mailboxID: mb.Id, expired: time.Now().After(st.Expires.AsTime())}
}

// commitWaiting runs fn through the account's committer and waits (retrying)
// while a mailbox it writes is busy; an expired staging found on the way is
// removed first.
func (s *Server) commitWaiting(ctx context.Context, account string, fn func(tx *etcdtx.Tx) error) (int64, error) {
	return s.waitBusy(ctx, func() (int64, error) { return s.committer.do(ctx, account, fn) })
}

// waitBusy retries run while it fails with a busyError.
func (s *Server) waitBusy(ctx context.Context, run func() (int64, error)) (int64, error) {
	backoff := 5 * time.Millisecond
	for {
		rev, err := run()
		var busy *busyError
		if !errors.As(err, &busy) {
			return rev, err
		}
		if busy.expired {
			s.reapStaging(busy.account, busy.mailboxID)
		}
		select {
		case <-ctx.Done():
			return 0, fail(reasonTemporary, "mailbox busy with a bulk copy or move; try again")
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 250*time.Millisecond)
	}
}

// reaping tracks the expired stagings this replica is removing.
var reaping sync.Map // account/mailbox → struct{}

// reapStaging removes an expired staging of a mailbox in the background
// (once per replica at a time).
func (s *Server) reapStaging(account, mailboxID string) {
	key := account + "/" + mailboxID
	if _, busy := reaping.LoadOrStore(key, struct{}{}); busy {
		return
	}
	go func() {
		defer reaping.Delete(key)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		// Take the staging over, so that no other reaper (or the late
		// operation itself) works on it meanwhile.
		opID := "reap-" + newID()
		var taken bool
		_, err := s.committer.do(ctx, account, func(tx *etcdtx.Tx) error {
			taken = false
			mb, err := s.loadMailbox(tx, account, mailboxID)
			if err != nil {
				return err
			}
			st := mb.GetStaging()
			if st == nil || time.Now().Before(st.Expires.AsTime()) {
				return nil
			}
			st.OpId, st.Expires = opID, timestamppb.New(time.Now().Add(s.cfg.StagingTTL))
			s.saveMailbox(tx, account, mb)
			taken = true
			return nil
		})
		if err != nil || !taken {
			return
		}
		if err := s.discardStaged(ctx, account, mailboxID, opID); err != nil {
			s.log.Warn("removing an abandoned bulk copy failed; the next writer retries", "account", account, "mailbox", mailboxID, "err", err)
			return
		}
		s.log.Info("removed the staged copies of an abandoned bulk copy or move", "account", account, "mailbox", mailboxID)
	}()
}

// discardStaged removes the staged entries of opID's staging (releasing
// their bodies), then the staging. Counters and quota never counted them.
func (s *Server) discardStaged(ctx context.Context, account, mailboxID, opID string) error {
	err := s.runBulk(ctx, account, mailboxID, s.keys.Mailbox(account, mailboxID), nil, bulkChange{
		opID:   opID,
		staged: true,
		cost: func(m *storagev1.Message) (int, int) {
			return 2, len(s.keys.Message(account, mailboxID, m.Uid)) + opCost + s.refCost(m.BodyKey)
		},
		stage: func(tx *etcdtx.Tx, mb *storagev1.Mailbox, msgs []*storagev1.Message) error {
			if mb.GetStaging().GetOpId() != opID {
				return fail(reasonTemporary, "the bulk copy lost its staging")
			}
			var refKeys []string
			for _, m := range msgs {
				refKeys = append(refKeys, s.keys.Body(m.BodyKey))
			}
			if err := tx.Prefetch(refKeys); err != nil {
				return err
			}
			var freed []string
			for _, m := range msgs {
				tx.Delete(s.keys.Message(account, mailboxID, m.Uid))
				if err := s.releaseBody(tx, m.BodyKey, &freed); err != nil {
					return err
				}
			}
			s.stageFreed(tx, freed)
			mb.Staging.Expires = timestamppb.New(time.Now().Add(s.cfg.StagingTTL))
			s.saveMailbox(tx, account, mb)
			return nil
		},
		committed: func([]*storagev1.Message) {},
	})
	if err != nil {
		return err
	}
	_, err = s.committer.do(ctx, account, func(tx *etcdtx.Tx) error {
		mb, err := s.loadMailbox(tx, account, mailboxID)
		if err != nil {
			return err
		}
		if mb.GetStaging().GetOpId() == opID {
			mb.Staging = nil
			s.saveMailbox(tx, account, mb)
			tx.Delete(s.keys.Cleanup(account, "staging-"+mailboxID))
		}
		return nil
	})
	return err
}

// stagedCopy copies (or moves) the messages of set from srcID to destID as
// one change however many transactions it takes. It returns the source and
// destination UIDs, pairwise, and the destination's UIDVALIDITY.
func (s *Server) stagedCopy(ctx context.Context, account, srcID, destID string, set *storagev1.UIDSet, move bool) (srcUIDs, destUIDs []uint32, validity uint32, err error) {
	// 1. Take the destination.
	opID, validity, err := s.takeStaging(ctx, account, destID)
	if err != nil {
		return nil, nil, 0, err
	}
	// From here on, a failure takes the staged copies back. The caller's
	// request may be gone by then: the rollback has its own deadline.
	rollback := func(cause error) error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		if err := s.discardStaged(rctx, account, destID, opID); err != nil {
			s.log.Error("could not take back the staged copies; they expire", "account", account, "mailbox", destID, "err", err)
		}
		if move {
			s.etcd.Delete(rctx, s.keys.MoveChunks(account, opID), clientv3.WithPrefix())
		}
		return cause
	}

	// 2. Stage the copies, step by step.
	var bytes, unseen uint64
	var stepSrc, stepDest []uint32
	var stepBytes, stepUnseen uint64
	err = s.runBulk(ctx, account, srcID, s.keys.Mailbox(account, srcID), set, bulkChange{
		readOnly: true, // the sources go only after publishing
		cost: func(m *storagev1.Message) (int, int) {
			return 2, s.entryCost(account, destID, m) + 64 + s.refCost(m.BodyKey) + 16
		},
		stage: func(tx *etcdtx.Tx, _ *storagev1.Mailbox, msgs []*storagev1.Message) error {
			stepSrc, stepDest, stepBytes, stepUnseen = nil, nil, 0, 0
			if _, err := s.loadQuota(tx, account); err != nil {
				return err // the account is gone, or going
			}
			dest, err := s.loadMailbox(tx, account, destID)
			if err != nil {
				return err
			}
			st := dest.GetStaging()
			if st.GetOpId() != opID {
				return fail(reasonTemporary, "the bulk copy lost its staging (it took too long)")
			}
			var refKeys []string
			for _, m := range msgs {
				refKeys = append(refKeys, s.keys.Body(m.BodyKey))
			}
			if err := tx.Prefetch(refKeys); err != nil {
				return err
			}
			for _, m := range msgs {
				if st.NextUid == ^uint32(0) {
					return fail(reasonTooMany, "mailbox has run out of UIDs")
				}
				cp := proto.Clone(m).(*storagev1.Message)
				cp.Uid, cp.Modseq = st.NextUid, st.Modseq
				st.NextUid++
				cp.SaveDate = timestamppb.Now() // RFC 8514 SAVEDATE of the copy
				tx.Put(s.keys.Message(account, destID, cp.Uid), encodeEntry(cp))
				if err := s.retainBody(tx, m.BodyKey); err != nil {
					return err
				}
				stepSrc, stepDest = append(stepSrc, m.Uid), append(stepDest, cp.Uid)
				stepBytes += m.Size
				if !hasFlag(m.Flags, `\Seen`) {
					stepUnseen++
				}
			}
			st.Expires = timestamppb.New(time.Now().Add(s.cfg.StagingTTL))
			s.saveMailbox(tx, account, dest)
			if move {
				// What this step copied, for a MOVE resumed after publishing.
				tx.Put(s.keys.MoveChunk(account, opID, stepSrc[0]), marshal(uidSetOf(stepSrc)))
			}
			return nil
		},
		committed: func([]*storagev1.Message) {
			srcUIDs, destUIDs = append(srcUIDs, stepSrc...), append(destUIDs, stepDest...)
			bytes, unseen = bytes+stepBytes, unseen+stepUnseen
		},
	})
	if err != nil {
		return nil, nil, 0, rollback(err)
	}

	// 3. Publish them all at once.
	n := uint64(len(destUIDs))
	err = s.publishStaging(ctx, account, destID, opID, bytes, n, unseen, !move, func(tx *etcdtx.Tx) {
		if move && n > 0 {
			// The source UIDs are in the step records (moving/): a set of
			// scattered UIDs would not fit in this transaction.
			tx.Put(s.keys.Cleanup(account, "move-"+opID), marshal(&records.MoveCleanup{SourceMailboxId: srcID}))
		}
	})
	if err != nil {
		return nil, nil, 0, rollback(err)
	}
	if move && n > 0 {
		// 4. Remove the sources. The copies are published: from here on the
		// MOVE goes forward, if need be through its cleanup mark.
		if err := s.finishMove(context.WithoutCancel(ctx), account, opID, srcID, uidSetOf(srcUIDs)); err != nil {
			s.log.Warn("removing a moved set from its source was interrupted; it will be resumed", "account", account, "err", err)
		}
	}
	return srcUIDs, destUIDs, validity, nil
}

// takeStaging makes a new staging hold the mailbox (waiting while another
// holds it) and returns its operation id and the mailbox's UIDVALIDITY.
func (s *Server) takeStaging(ctx context.Context, account, mailboxID string) (opID string, validity uint32, err error) {
	opID = newID()
	_, err = s.commitWaiting(ctx, account, func(tx *etcdtx.Tx) error {
		if _, err := s.loadQuota(tx, account); err != nil {
			return err // the account is gone, or going
		}
		mb, err := s.loadMailbox(tx, account, mailboxID)
		if err != nil {
			return err
		}
		if err := checkWritable(account, mb, ""); err != nil {
			return err
		}
		// A mark, so that a staging whose replica died is reaped even if
		// no writer comes by (resumeCleanups).
		tx.Put(s.keys.Cleanup(account, "staging-"+mailboxID), cleanupStamp())
		if mb.UidNext == 0 || mb.UidNext == ^uint32(0) {
			return fail(reasonTooMany, "mailbox has run out of UIDs")
		}
		mb.Staging = &storagev1.Staging{OpId: opID, NextUid: mb.UidNext, Modseq: mb.HighestModseq + 1,
			Expires: timestamppb.New(time.Now().Add(s.cfg.StagingTTL))}
		validity = mb.UidValidity
		s.saveMailbox(tx, account, mb)
		return nil
	})
	return opID, validity, err
}

// publishStaging makes opID's staged entries visible in one transaction:
// n messages of bytes bytes, unseen of them without \Seen. With limited
// the account must have room for them in its quota. extra stages more writes in the
// same transaction.
func (s *Server) publishStaging(ctx context.Context, account, mailboxID, opID string, bytes, n, unseen uint64, limited bool, extra func(tx *etcdtx.Tx)) error {
	_, err := s.committer.do(ctx, account, func(tx *etcdtx.Tx) error {
		mb, err := s.loadMailbox(tx, account, mailboxID)
		if err != nil {
			return err
		}
		st := mb.GetStaging()
		if st.GetOpId() != opID {
			return fail(reasonTemporary, "the bulk change lost its staging (it took too long)")
		}
		q, err := s.loadQuota(tx, account)
		if err != nil {
			return err
		}
		if limited {
			if err := checkQuota(q, bytes, n); err != nil {
				return err
			}
		}
		q.UsedBytes += bytes
		q.UsedMessages += n
		mb.UidNext = st.NextUid
		mb.Messages += uint32(n)
		mb.Size += bytes
		mb.Unseen += uint32(unseen)
		if n > 0 {
			mb.HighestModseq = max(mb.HighestModseq+1, st.Modseq)
		}
		mb.Staging = nil
		s.saveMailbox(tx, account, mb)
		s.saveQuota(tx, account, q)
		tx.Delete(s.keys.Cleanup(account, "staging-"+mailboxID))
		if extra != nil {
			extra(tx)
		}
		return nil
	})
	return err
}

// finishMove removes a published MOVE's source entries (uids, or when nil
// the UIDs its steps recorded), then its records.
func (s *Server) finishMove(ctx context.Context, account, opID, srcID string, uids *storagev1.UIDSet) error {
	if uids == nil {
		resp, err := s.etcd.Get(ctx, s.keys.MoveChunks(account, opID), clientv3.WithPrefix())
		if err != nil {
			return err
		}
		var all []uint32
		for _, kv := range resp.Kvs {
			chunk := &storagev1.UIDSet{}
			if err := proto.Unmarshal(kv.Value, chunk); err != nil {
				return err
			}
			for _, r := range chunk.Ranges {
				for u := r.First; u <= r.Last && u != 0; u++ {
					all = append(all, u)
				}
			}
		}
		slices.Sort(all)
		uids = uidSetOf(all)
	}
	if len(uids.GetRanges()) > 0 {
		_, err := s.removeEntries(ctx, account, srcID, s.keys.Mailbox(account, srcID), uids, true)
		if err != nil && storagev1.ReasonOf(err) != reasonMailboxNotFound {
			return err
		}
	}
	_, err := s.etcd.Txn(ctx).Then(clientv3.OpDelete(s.keys.MoveChunks(account, opID), clientv3.WithPrefix()),
		clientv3.OpDelete(s.keys.Cleanup(account, "move-"+opID))).Commit()
	return err
}
