package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/blobstore"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// The consistency check (mailctl fsck), as Dovecot's force-resync and
// Postfix's postsuper -s are for theirs. It must run while mail flows and
// report nothing that is not wrong, so it reads etcd at one revision R and
// judges the body store against it:
//
//   - The store is listed before R is chosen. A body an entry names at R was
//     stored before that entry's transaction; if the listing lacks it (an
//     upload after the listing) the object is looked up on its own before it
//     is reported missing.
//   - An object with no reference record at R may be a fresh upload or a
//     body the sweeper will delete: it is an orphan only if it is older than
//     the sweep grace, no freed record at R schedules it, and, read now,
//     nothing references it and no upload is writing it (the orphan scan's
//     rule, sweeper.go).
//   - Counters are judged against entries read at the same revision. Every
//     change to a mailbox's entries rewrites its record and the quota in the
//     same transaction, and every change to a body's references rewrites its
//     reference record: a repair that applies only if that record's
//     ModRevision is still what R saw therefore fixes exactly what was read.

// checkPage is how many keys one read of the check's scan returns.
const checkPage = 2000

// checker is one run of Check.
type checker struct {
	s      *Server
	repair bool
	send   func(*storagev1.Finding) error
	rev    int64
	sum    storagev1.CheckSummary

	listed    map[string]time.Time // body key → newest of its object and summary
	stored    map[string]bool      // body keys whose body object was listed
	bodyRecs  map[string]bodyRec   // bodies/<key> at rev
	scheduled map[string]bool      // bodies named by freed records or gc markers at rev
	refs      map[string]uint32    // references counted from entries and queue items
	// undecodable is set when an entry or queue item could not be read:
	// its body's reference is then uncounted, and no record is dropped.
	undecodable bool
}

type bodyRec struct {
	refs   uint32
	modRev int64
}

// accountCheck gathers one account's records and entries.
type accountCheck struct {
	id        string
	deleting  bool
	quota     *storagev1.Quota
	quotaRev  int64
	mailboxes map[string]*mailboxCheck
}

type mailboxCheck struct {
	key      string // etcd key of its record (mailboxes/ or deleting/)
	rec      *storagev1.Mailbox
	modRev   int64
	messages uint32
	unseen   uint32
	size     uint64
	modseq   uint64 // highest modseq of a published entry
}

func (s *Server) Check(req *storagev1.CheckRequest, stream storagev1.MaintenanceService_CheckServer) error {
	ctx := stream.Context()
	c := &checker{s: s, repair: req.Repair, listed: map[string]time.Time{}, stored: map[string]bool{}, bodyRecs: map[string]bodyRec{},
		scheduled: map[string]bool{}, refs: map[string]uint32{}}
	c.send = func(f *storagev1.Finding) error {
		c.sum.Findings++
		if f.Repaired {
			c.sum.Repaired++
		}
		s.log.Warn("consistency check", "kind", f.Kind.String(), "account", f.AccountId, "mailbox", f.MailboxId,
			"key", f.Key, "detail", f.Detail, "repaired", f.Repaired)
		return stream.Send(&storagev1.CheckResponse{Result: &storagev1.CheckResponse_Finding{Finding: f}})
	}
	if err := c.run(ctx); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return toStatus(err)
		}
		return fail(reasonTemporary, "consistency check: %v", err)
	}
	s.log.Info("consistency check done", "revision", c.sum.Revision, "accounts", c.sum.Accounts, "messages", c.sum.Messages,
		"findings", c.sum.Findings, "repaired", c.sum.Repaired)
	return stream.Send(&storagev1.CheckResponse{Result: &storagev1.CheckResponse_Summary{Summary: &c.sum}})
}

func (c *checker) run(ctx context.Context) error {
	s := c.s
	// 1. The store, listed before the revision is chosen.
	err := s.blobs.List(ctx, func(info blobstore.Info) error {
		key := strings.TrimPrefix(info.Key, summaryPrefix)
		if key == info.Key {
			c.sum.Objects++
			c.stored[key] = true
		}
		if info.Modified.After(c.listed[key]) {
			c.listed[key] = info.Modified
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing the body store: %w", err)
	}
	head, err := s.etcd.Get(ctx, s.keys.Bodies(), clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	c.rev = head.Header.Revision
	c.sum.Revision = c.rev

	// 2. The cell-wide records at that revision.
	err = s.scanAt(ctx, s.keys.Bodies(), c.rev, func(kv *mvccpb.KeyValue) error {
		// An undecodable record counts as 0: the comparison reports it,
		// and a repair (on its ModRevision) writes the counted value.
		ref := &records.BodyRef{}
		proto.Unmarshal(kv.Value, ref)
		c.bodyRecs[strings.TrimPrefix(string(kv.Key), s.keys.Bodies())] = bodyRec{refs: ref.Refs, modRev: kv.ModRevision}
		return nil
	})
	if err != nil {
		return err
	}
	c.sum.Bodies = uint64(len(c.bodyRecs))
	err = s.scanAt(ctx, s.keys.FreedAll(), c.rev, func(kv *mvccpb.KeyValue) error {
		rec := &records.FreedBodies{}
		if proto.Unmarshal(kv.Value, rec) == nil {
			for _, k := range rec.BodyKeys {
				c.scheduled[k] = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = s.scanAt(ctx, s.keys.GCMarkers(), c.rev, func(kv *mvccpb.KeyValue) error {
		c.scheduled[strings.TrimPrefix(string(kv.Key), s.keys.GCMarkers())] = true
		return nil
	})
	if err != nil {
		return err
	}

	// 3. Every account, one after the other (keys come sorted).
	var acct *accountCheck
	err = s.scanAt(ctx, s.keys.Accounts(), c.rev, func(kv *mvccpb.KeyValue) error {
		rest := strings.TrimPrefix(string(kv.Key), s.keys.Accounts())
		id, sub, ok := strings.Cut(rest, "/")
		if !ok {
			return nil
		}
		if acct == nil || acct.id != id {
			if err := c.finishAccount(ctx, acct); err != nil {
				return err
			}
			acct = &accountCheck{id: id, mailboxes: map[string]*mailboxCheck{}}
			c.sum.Accounts++
		}
		return c.accountKey(ctx, acct, sub, kv)
	})
	if err != nil {
		return err
	}
	if err := c.finishAccount(ctx, acct); err != nil {
		return err
	}

	// 4. The outbound queue's bodies.
	err = s.scanAt(ctx, s.keys.QueueItems(), c.rev, func(kv *mvccpb.KeyValue) error {
		rec := &records.QueueRecord{}
		if err := proto.Unmarshal(kv.Value, rec); err != nil || rec.BodyKey == "" {
			c.undecodable = true
			return c.send(&storagev1.Finding{Kind: storagev1.Finding_KIND_BAD_ENTRY, Key: string(kv.Key), Detail: "undecodable queue item"})
		}
		c.sum.QueueItems++
		return c.reference(ctx, rec.BodyKey, "", "", "queue item "+rec.GetItem().GetId())
	})
	if err != nil {
		return err
	}

	// 5. Reference counts, then orphans.
	if err := c.checkRefs(ctx); err != nil {
		return err
	}
	return c.checkOrphans(ctx)
}

// scanAt calls fn for every key under prefix at revision rev, in key order.
func (s *Server) scanAt(ctx context.Context, prefix string, rev int64, fn func(*mvccpb.KeyValue) error) error {
	from, end := prefix, clientv3.GetPrefixRangeEnd(prefix)
	for {
		resp, err := s.etcd.Get(ctx, from, clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithLimit(checkPage))
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			if err := fn(kv); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// accountKey takes one key of an account (sub is the part after its id).
func (c *checker) accountKey(ctx context.Context, acct *accountCheck, sub string, kv *mvccpb.KeyValue) error {
	kind, rest, _ := strings.Cut(sub, "/")
	switch kind {
	case "account":
		rec := &records.AccountRecord{}
		if proto.Unmarshal(kv.Value, rec) == nil {
			acct.deleting = rec.Deleting
		}
	case "quota":
		q := &storagev1.Quota{}
		if proto.Unmarshal(kv.Value, q) == nil {
			acct.quota, acct.quotaRev = q, kv.ModRevision
		}
	case "mailboxes", "deleting":
		mb := &storagev1.Mailbox{}
		if err := proto.Unmarshal(kv.Value, mb); err != nil {
			return c.send(&storagev1.Finding{Kind: storagev1.Finding_KIND_MAILBOX_COUNTERS, AccountId: acct.id, MailboxId: rest,
				Key: string(kv.Key), Detail: "undecodable mailbox record"})
		}
		acct.mailboxes[rest] = &mailboxCheck{key: string(kv.Key), rec: mb, modRev: kv.ModRevision}
		c.sum.Mailboxes++
	case "messages":
		mailboxID, _, _ := strings.Cut(rest, "/")
		msg, err := decodeEntryKV(kv.Key, kv.Value)
		if err != nil {
			c.undecodable = true
			return c.send(&storagev1.Finding{Kind: storagev1.Finding_KIND_BAD_ENTRY, AccountId: acct.id, MailboxId: mailboxID,
				Key: string(kv.Key), Detail: "undecodable index entry: " + err.Error()})
		}
		c.sum.Messages++
		if err := c.reference(ctx, msg.BodyKey, acct.id, mailboxID, fmt.Sprintf("UID %d", msg.Uid)); err != nil {
			return err
		}
		mb := acct.mailboxes[mailboxID] // records sort before entries
		if mb == nil {
			return c.send(&storagev1.Finding{Kind: storagev1.Finding_KIND_BAD_ENTRY, AccountId: acct.id, MailboxId: mailboxID,
				Key: string(kv.Key), Detail: "entry of a mailbox that has no record"})
		}
		if msg.Uid >= mb.rec.UidNext {
			if mb.rec.Staging != nil {
				return nil // a staged copy: counted when published
			}
			return c.send(&storagev1.Finding{Kind: storagev1.Finding_KIND_BAD_ENTRY, AccountId: acct.id, MailboxId: mailboxID,
				Key: string(kv.Key), Detail: fmt.Sprintf("UID %d at or above UIDNEXT %d with no copy staging", msg.Uid, mb.rec.UidNext)})
		}
		mb.messages++
		mb.size += msg.Size
		if !hasFlag(msg.Flags, `\Seen`) {
			mb.unseen++
		}
		mb.modseq = max(mb.modseq, msg.Modseq)
	}
	return nil
}

// reference counts one reference to body key and checks that the store
// holds it (where names the referrer in a finding).
func (c *checker) reference(ctx context.Context, key, account, mailbox, where string) error {
	c.refs[key]++
	if c.refs[key] > 1 {
		return nil // checked at its first reference
	}
	if c.stored[key] {
		return nil
	}
	if _, err := c.s.blobs.Stat(ctx, key); err == nil {
		return nil // stored after the listing
	} else if !errors.Is(err, blobstore.ErrNotFound) {
		return err
	}
	return c.send(&storagev1.Finding{Kind: storagev1.Finding_KIND_BODY_MISSING, AccountId: account, MailboxId: mailbox, Key: key,
		Detail: where + " names a body the store does not hold (the message is lost)"})
}

// finishAccount compares an account's counters with what its entries add up to.
func (c *checker) finishAccount(ctx context.Context, acct *accountCheck) error {
	if acct == nil {
		return nil
	}
	var bytes, messages uint64
	for id, mb := range acct.mailboxes {
		bytes += mb.size
		messages += uint64(mb.messages)
		r := mb.rec
		if r.Messages == mb.messages && r.Size == mb.size && r.Unseen == mb.unseen && r.HighestModseq >= mb.modseq {
			continue
		}
		fixed := proto.Clone(r).(*storagev1.Mailbox)
		fixed.Messages, fixed.Size, fixed.Unseen = mb.messages, mb.size, mb.unseen
		fixed.HighestModseq = max(r.HighestModseq, mb.modseq)
		f := &storagev1.Finding{Kind: storagev1.Finding_KIND_MAILBOX_COUNTERS, AccountId: acct.id, MailboxId: id, Key: mb.key,
			Detail: fmt.Sprintf("messages %d, size %d, unseen %d, highest modseq %d; counted %d, %d, %d, highest entry modseq %d",
				r.Messages, r.Size, r.Unseen, r.HighestModseq, mb.messages, mb.size, mb.unseen, mb.modseq)}
		if err := c.fix(ctx, f, clientv3.Compare(clientv3.ModRevision(mb.key), "=", mb.modRev),
			clientv3.OpPut(mb.key, string(marshal(fixed)))); err != nil {
			return err
		}
	}
	q := acct.quota
	if acct.deleting || q == nil || (q.UsedBytes == bytes && q.UsedMessages == messages) {
		return nil
	}
	fixed := proto.Clone(q).(*storagev1.Quota)
	fixed.UsedBytes, fixed.UsedMessages = bytes, messages
	key := c.s.keys.Quota(acct.id)
	f := &storagev1.Finding{Kind: storagev1.Finding_KIND_QUOTA_USAGE, AccountId: acct.id, Key: key,
		Detail: fmt.Sprintf("used %d bytes in %d messages; counted %d bytes in %d messages", q.UsedBytes, q.UsedMessages, bytes, messages)}
	return c.fix(ctx, f, clientv3.Compare(clientv3.ModRevision(key), "=", acct.quotaRev), clientv3.OpPut(key, string(marshal(fixed))))
}

// fix applies ops if cmp still holds (with repair on), then reports f.
func (c *checker) fix(ctx context.Context, f *storagev1.Finding, cmp clientv3.Cmp, ops ...clientv3.Op) error {
	if c.repair {
		resp, err := c.s.etcd.Txn(ctx).If(cmp).Then(ops...).Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			f.Repaired = true
		} else {
			f.Detail += " (changed while checked: not repaired, run the check again)"
		}
	}
	return c.send(f)
}

// checkRefs compares every reference record with the references counted.
func (c *checker) checkRefs(ctx context.Context) error {
	for key, n := range c.refs {
		rec, ok := c.bodyRecs[key]
		if ok && rec.refs == n {
			continue
		}
		bk := c.s.keys.Body(key)
		f := &storagev1.Finding{Kind: storagev1.Finding_KIND_BODY_REFS, Key: key,
			Detail: fmt.Sprintf("reference record says %d, counted %d", rec.refs, n)}
		if !ok {
			f.Detail = fmt.Sprintf("no reference record, counted %d", n)
		}
		// A missing record compares as ModRevision 0.
		if err := c.fix(ctx, f, clientv3.Compare(clientv3.ModRevision(bk), "=", rec.modRev),
			clientv3.OpPut(bk, string(marshal(&records.BodyRef{Refs: n})))); err != nil {
			return err
		}
	}
	for key, rec := range c.bodyRecs {
		if c.refs[key] > 0 {
			continue
		}
		// Nothing references it: drop the record and schedule the body
		// for the sweeper, as the last expunge would have.
		bk := c.s.keys.Body(key)
		now := time.Now()
		freed := c.s.keys.Freed(now.UnixMilli(), newID())
		f := &storagev1.Finding{Kind: storagev1.Finding_KIND_BODY_REFS, Key: key,
			Detail: fmt.Sprintf("reference record says %d, nothing references it", rec.refs)}
		if c.undecodable {
			// An entry that could not be read may be the one naming it:
			// dropping the record could lose that message.
			f.Detail += " (not repaired: some entries could not be read)"
			if err := c.send(f); err != nil {
				return err
			}
			continue
		}
		if err := c.fix(ctx, f, clientv3.Compare(clientv3.ModRevision(bk), "=", rec.modRev), clientv3.OpDelete(bk),
			clientv3.OpPut(freed, string(marshal(&records.FreedBodies{BodyKeys: []string{key}})))); err != nil {
			return err
		}
	}
	return nil
}

// checkOrphans reports (and with repair deletes) stored objects that
// nothing references or schedules, by the orphan scan's rule.
func (c *checker) checkOrphans(ctx context.Context) error {
	cutoff := time.Now().Add(-c.s.cfg.SweepGrace)
	var candidates []string
	for key, modified := range c.listed {
		if _, ok := c.bodyRecs[key]; ok || c.refs[key] > 0 || c.scheduled[key] || modified.After(cutoff) {
			continue
		}
		candidates = append(candidates, key)
	}
	// A held sweeper means a backup may still copy it: report, do not delete.
	return c.s.eachOrphan(ctx, candidates, func(key string, held bool) error {
		if gone, err := c.s.bodyGone(ctx, key); err != nil || gone {
			return err // gone: the sweeper removed it since the listing
		}
		f := &storagev1.Finding{Kind: storagev1.Finding_KIND_ORPHAN, Key: key,
			Detail: "a stored body (or its summary) that nothing references or schedules for removal"}
		if c.repair && !held {
			if err := c.s.deleteBlobs(ctx, key); err != nil {
				return err
			}
			f.Repaired = true
		}
		return c.send(f)
	})
}

// bodyGone reports whether the body of key is no longer stored. A summary
// left alone (its body deleted by the sweeper a moment ago, or before a
// crash) is no finding: the orphan scan removes it.
func (s *Server) bodyGone(ctx context.Context, key string) (bool, error) {
	if _, err := s.blobs.Stat(ctx, key); err == nil {
		return false, nil
	} else if !errors.Is(err, blobstore.ErrNotFound) {
		return false, err
	}
	return true, nil
}
