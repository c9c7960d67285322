package service

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	clientv3 "go.etcd.io/etcd/client/v3"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// Removals that outlive one request. Deleting a mailbox takes it away from
// the client in one transaction and then removes its entries (releasing
// their bodies and usage) step by step; deleting an account does that for
// every mailbox, then removes the account's keys. Each leaves a cleanup mark
// (cleanup/<account>/<mailbox id or "account">) until it is done, so that
// an interrupted removal — a replica stopped, a client gone — is finished by
// the replica that holds the sweeper's lock.

// cleanupResumeAfter is how old a mark must be before the sweeper resumes
// it: younger ones most likely belong to a request still running.
const cleanupResumeAfter = time.Minute

// resumeStaging looks at a staging mark: gone staging, gone mark; an expired
// one is reaped.
func (s *Server) resumeStaging(ctx context.Context, account, mailboxID, markKey string, modRev int64) error {
	resp, err := s.etcd.Get(ctx, s.keys.Mailbox(account, mailboxID))
	if err != nil {
		return err
	}
	mb := &storagev1.Mailbox{}
	if len(resp.Kvs) > 0 {
		if err := proto.Unmarshal(resp.Kvs[0].Value, mb); err != nil {
			return err
		}
	}
	if mb.Staging == nil {
		_, err := s.etcd.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(markKey), "=", modRev)).Then(clientv3.OpDelete(markKey)).Commit()
		return err
	}
	if time.Now().After(mb.Staging.Expires.AsTime()) {
		s.reapStaging(account, mailboxID)
	}
	return nil
}

// resumeSeen remembers the MOVE marks seen by the last sweep: a mark still
// there, unchanged, a sweep later belongs to a MOVE that stopped.
var resumeSeen sync.Map

func (s *Server) seenBefore(key string, modRev int64) bool {
	prev, ok := resumeSeen.Swap(key, modRev)
	return ok && prev.(int64) == modRev
}

func cleanupStamp() []byte { return []byte(strconv.FormatInt(time.Now().UnixMilli(), 10)) }

// finishMailboxDelete removes the entries of a deleted mailbox, then its
// record and mark.
func (s *Server) finishMailboxDelete(ctx context.Context, account, mailboxID string) error {
	key := s.keys.Deleting(account, mailboxID)
	_, err := s.removeEntries(ctx, account, mailboxID, key, nil, true)
	if err != nil && storagev1.ReasonOf(err) != reasonMailboxNotFound {
		return err
	}
	// No entry can arrive meanwhile: nothing names the mailbox any more.
	_, err = s.etcd.Txn(ctx).Then(clientv3.OpDelete(key), clientv3.OpDelete(s.keys.Cleanup(account, mailboxID)),
		clientv3.OpDelete(s.keys.VanishedAll(account, mailboxID), clientv3.WithPrefix()),
		clientv3.OpDelete(s.keys.Recent(account, mailboxID))).Commit()
	return err
}

// finishAccountDelete removes everything of an account marked Deleting:
// every mailbox's entries (live or already deleted ones), then its keys.
func (s *Server) finishAccountDelete(ctx context.Context, account string) error {
	for _, prefix := range []string{s.keys.Mailboxes(account), s.keys.AllDeleting(account)} {
		resp, err := s.etcd.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			mailboxID := strings.TrimPrefix(string(kv.Key), prefix)
			_, err := s.removeEntries(ctx, account, mailboxID, string(kv.Key), nil, true)
			if err != nil && storagev1.ReasonOf(err) != reasonMailboxNotFound {
				return err
			}
		}
	}
	_, err := s.etcd.Txn(ctx).Then(
		clientv3.OpDelete(s.keys.AccountRoot(account), clientv3.WithPrefix()),
		clientv3.OpDelete(s.keys.AccountCleanups(account), clientv3.WithPrefix())).Commit()
	return err
}

// resumeCleanups finishes the removals whose marks are older than
// cleanupResumeAfter. The sweeper calls it under its lock.
func (s *Server) resumeCleanups(ctx context.Context) (int, error) {
	resp, err := s.etcd.Get(ctx, s.keys.Cleanups(), clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	done := 0
	for _, kv := range resp.Kvs {
		// Marks hold their start time, except a MOVE's, which holds what is
		// left to do: its age is the key's creation, from the revision's
		// point of view unknown, so the mark's ModRevision is compared with
		// the one seen a sweep earlier (resumeSeen).
		if strings.Contains(string(kv.Key), "/move-") {
			if !s.seenBefore(string(kv.Key), kv.ModRevision) {
				continue
			}
		} else if ms, _ := strconv.ParseInt(string(kv.Value), 10, 64); time.Since(time.UnixMilli(ms)) < cleanupResumeAfter {
			continue
		}
		account, name, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), s.keys.Cleanups()), "/")
		switch {
		case name == "account":
			err = s.finishAccountDelete(ctx, account)
		case strings.HasPrefix(name, "move-"):
			mc := &records.MoveCleanup{}
			if err = proto.Unmarshal(kv.Value, mc); err == nil {
				err = s.finishMove(ctx, account, strings.TrimPrefix(name, "move-"), mc.SourceMailboxId, mc.Uids)
			}
		case strings.HasPrefix(name, "staging-"):
			err = s.resumeStaging(ctx, account, strings.TrimPrefix(name, "staging-"), string(kv.Key), kv.ModRevision)
		default:
			err = s.finishMailboxDelete(ctx, account, name)
		}
		if err != nil {
			// One that keeps failing must not hold up the others.
			s.log.Warn("resuming an interrupted removal failed; next sweep", "account", account, "what", name, "err", err)
			continue
		}
		s.log.Info("resumed an interrupted removal", "account", account, "what", name)
		done++
	}
	return done, nil
}
