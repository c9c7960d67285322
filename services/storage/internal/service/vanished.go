package service

// Expunge records: what IMAP QRESYNC (RFC 7162) needs to answer "which of
// the UIDs I knew at modseq M are gone?" (VANISHED (EARLIER)) without
// keeping tombstones for every message ever expunged.
//
// Every transaction that removes visible entries from a mailbox (EXPUNGE,
// POP3 DELE, a MOVE's source side) bumps the mailbox's HIGHESTMODSEQ once
// and, in the same transaction, writes one record
//
//	accounts/<id>/vanished/<mailbox id>/<that modseq, 20 digits>
//
// holding the UIDs it removed (at most a step's worth: a bulk change's step
// is bounded by etcd's operations per transaction, so a record is small).
// The mailbox record's ExpungeLog says how far back the records reach:
// every expunge with a modseq above floor has its record. Records are pruned
// oldest first once a mailbox has more than Config.ExpungeRecords or they
// are older than Config.ExpungeRetention, and floor moves up to the last
// pruned modseq in the same transaction. A mailbox created before the
// records existed has no ExpungeLog: its floor is its HIGHESTMODSEQ when the
// first record is written (nothing earlier is known).
//
// ListVanished answers exactly from the records when since >= floor; when
// the client's modseq is older, it answers every UID below UIDNEXT that does
// not exist now (within the client's known UIDs), which RFC 7162 3.2.5.1
// allows (a server may name UIDs that never existed): longer, never wrong.
// Either way the answer comes in pages of UID ranges, so a 100 000-message
// mailbox costs bounded memory per page.

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
	"github.com/mailfleet/mailfleet/services/storage/internal/keys"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// expungeRecordCost is what one UID adds to its step's expunge record
// (two varints of a range at most); the record's key and framing come out
// of the step's reserve.
const expungeRecordCost = 12

// Paging of ListVanished: records per exact page, index keys per
// approximate page.
const (
	vanishedRecordPage = 256
	vanishedKeyPage    = 5000
)

// pruneBatch is how many records one pruning transaction deletes at most.
const pruneBatch = 100

// recordExpunge stages the expunge record of one transaction: uids were
// removed from mb, whose HighestModseq the caller has already bumped for it.
func (s *Server) recordExpunge(tx *etcdtx.Tx, account string, mb *storagev1.Mailbox, uids []uint32) {
	if len(uids) == 0 {
		return
	}
	if mb.ExpungeLog == nil {
		// A mailbox from before the records: nothing earlier is known.
		mb.ExpungeLog = &storagev1.ExpungeLog{Floor: mb.HighestModseq - 1}
	}
	mb.ExpungeLog.Records++
	sorted := slices.Clone(uids)
	slices.Sort(sorted)
	tx.Put(s.keys.Vanished(account, mb.Id, mb.HighestModseq),
		marshal(&records.Vanished{Uids: uidSetOf(sorted), ExpungedAt: time.Now().UnixMilli()}))
}

// pruneExpungeLog removes the mailbox's oldest expunge records beyond the
// count limit and those past the retention, moving the floor up with them.
// It runs after an expunge committed; a failure leaves the records for the
// next one (they are only ever more than needed).
func (s *Server) pruneExpungeLog(ctx context.Context, account, mailboxID string) {
	limit := s.cfg.ExpungeRecords
	if limit <= 0 {
		limit = DefaultConfig().ExpungeRecords
	}
	mbKey := s.keys.Mailbox(account, mailboxID)
	for attempt := 0; attempt < 16; attempt++ {
		resp, err := s.etcd.Get(ctx, mbKey)
		if err != nil || len(resp.Kvs) == 0 {
			return
		}
		mb := &storagev1.Mailbox{}
		if proto.Unmarshal(resp.Kvs[0].Value, mb) != nil || mb.ExpungeLog == nil || mb.ExpungeLog.Records == 0 {
			return
		}
		log := mb.ExpungeLog
		excess := int(log.Records) - limit
		// The age is looked at every 16th record (and whenever over the
		// count): one extra read for an expunge now and then.
		if excess <= 0 && log.Records%16 != 0 {
			return
		}
		prefix := s.keys.VanishedAll(account, mailboxID)
		recs, err := s.etcd.Get(ctx, prefix, clientv3.WithRange(keys.PrefixEnd(prefix)), clientv3.WithLimit(pruneBatch),
			clientv3.WithRev(resp.Header.Revision))
		if err != nil {
			return
		}
		cutoff := time.Now().Add(-s.cfg.ExpungeRetention).UnixMilli()
		var del []clientv3.Op
		floor := log.Floor
		for i, kv := range recs.Kvs {
			rec := &records.Vanished{}
			if proto.Unmarshal(kv.Value, rec) != nil {
				return
			}
			if i >= excess && (s.cfg.ExpungeRetention <= 0 || rec.ExpungedAt >= cutoff) {
				break
			}
			del = append(del, clientv3.OpDelete(string(kv.Key)))
			floor = max(floor, modseqFromKey(string(kv.Key)))
		}
		if len(del) == 0 {
			return
		}
		log.Floor = floor
		log.Records -= uint32(min(len(del), int(log.Records)))
		txn, err := s.etcd.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(mbKey), "=", resp.Kvs[0].ModRevision)).
			Then(append(del, clientv3.OpPut(mbKey, string(marshal(mb))))...).Commit()
		if err != nil {
			s.log.Warn("pruning expunge records failed", "account", account, "mailbox", mailboxID, "err", err)
			return
		}
		if txn.Succeeded && len(del) < pruneBatch {
			return
		}
		// A conflict (the mailbox changed meanwhile), or more to prune.
	}
}

// modseqFromKey parses the modseq at the end of an expunge record's key.
func modseqFromKey(key string) uint64 {
	n, _ := strconv.ParseUint(key[strings.LastIndexByte(key, '/')+1:], 10, 64)
	return n
}

func (s *Server) ListVanished(ctx context.Context, req *storagev1.ListVanishedRequest) (*storagev1.ListVanishedResponse, error) {
	if req.AccountId == "" || strings.Contains(req.AccountId, "/") || req.MailboxId == "" || strings.Contains(req.MailboxId, "/") {
		return nil, errInvalid("account and mailbox ids are required")
	}
	if req.SinceModseq == 0 {
		return nil, errInvalid("since_modseq must be at least 1")
	}
	var opts []clientv3.OpOption
	if req.Revision > 0 {
		opts = append(opts, clientv3.WithRev(req.Revision))
	}
	mbKey := s.keys.Mailbox(req.AccountId, req.MailboxId)
	resp, err := s.etcd.Get(ctx, mbKey, opts...)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, toStatus(fail(reasonMailboxNotFound, "no such mailbox"))
	}
	mb := &storagev1.Mailbox{}
	if err := proto.Unmarshal(resp.Kvs[0].Value, mb); err != nil {
		return nil, toStatus(err)
	}
	rev := resp.Header.Revision
	if req.Revision > 0 {
		rev = req.Revision
	}
	out := &storagev1.ListVanishedResponse{Uids: &storagev1.UIDSet{}, Revision: rev, HighestModseq: mb.HighestModseq}
	if req.SinceModseq >= mb.HighestModseq {
		return out, nil // nothing happened since
	}
	floor := mb.HighestModseq
	if mb.ExpungeLog != nil {
		floor = mb.ExpungeLog.Floor
	}
	if req.SinceModseq >= floor {
		err = s.vanishedExact(ctx, req, rev, out)
	} else {
		out.Approximate = true
		err = s.vanishedApproximate(ctx, req, mb, rev, out)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return out, nil
}

// vanishedExact answers from the expunge records above req.SinceModseq.
func (s *Server) vanishedExact(ctx context.Context, req *storagev1.ListVanishedRequest, rev int64, out *storagev1.ListVanishedResponse) error {
	from := req.SinceModseq + 1
	if t, ok := strings.CutPrefix(req.PageToken, "r"); ok && t != "" {
		after, err := strconv.ParseUint(t, 10, 64)
		if err != nil {
			return errInvalid("bad page token")
		}
		from = max(from, after+1)
	} else if req.PageToken != "" {
		return errInvalid("bad page token")
	}
	prefix := s.keys.VanishedAll(req.AccountId, req.MailboxId)
	resp, err := s.etcd.Get(ctx, s.keys.Vanished(req.AccountId, req.MailboxId, from),
		clientv3.WithRange(keys.PrefixEnd(prefix)), clientv3.WithLimit(vanishedRecordPage), clientv3.WithRev(rev))
	if err != nil {
		return err
	}
	inSet := uidMatcher(req.Uids)
	var uids []uint32
	for _, kv := range resp.Kvs {
		rec := &records.Vanished{}
		if err := proto.Unmarshal(kv.Value, rec); err != nil {
			return err
		}
		for _, r := range rec.Uids.GetRanges() {
			for u := r.First; u <= r.Last && u != 0; u++ {
				if inSet(u) {
					uids = append(uids, u)
				}
			}
		}
	}
	slices.Sort(uids)
	out.Uids = uidSetOf(slices.Compact(uids))
	if resp.More && len(resp.Kvs) > 0 {
		out.More = true
		out.PageToken = "r" + strconv.FormatUint(modseqFromKey(string(resp.Kvs[len(resp.Kvs)-1].Key)), 10)
	}
	return nil
}

// vanishedApproximate answers every UID below UIDNEXT (within req.Uids)
// that has no index entry: the gaps between the entries, a page of keys at
// a time.
func (s *Server) vanishedApproximate(ctx context.Context, req *storagev1.ListVanishedRequest, mb *storagev1.Mailbox, rev int64, out *storagev1.ListVanishedResponse) error {
	if mb.UidNext <= 1 {
		return nil
	}
	first, last := uidBounds(req.Uids)
	upper := mb.UidNext - 1
	if last != 0 {
		upper = min(upper, last)
	}
	from := max(first, 1)
	if t, ok := strings.CutPrefix(req.PageToken, "u"); ok && t != "" {
		after, err := strconv.ParseUint(t, 10, 32)
		if err != nil {
			return errInvalid("bad page token")
		}
		from = max(from, uint32(after)+1)
	} else if req.PageToken != "" {
		return errInvalid("bad page token")
	}
	if from > upper {
		return nil
	}
	resp, err := s.etcd.Get(ctx, s.keys.Message(req.AccountId, req.MailboxId, from),
		clientv3.WithRange(s.keys.Message(req.AccountId, req.MailboxId, upper)+"\x00"), clientv3.WithKeysOnly(),
		clientv3.WithLimit(vanishedKeyPage), clientv3.WithRev(rev))
	if err != nil {
		return err
	}
	set := out.Uids
	cursor := from
	for _, kv := range resp.Kvs {
		uid := uidFromKey(string(kv.Key))
		if uid > cursor {
			addClipped(set, req.Uids, cursor, uid-1)
		}
		cursor = uid + 1
	}
	if resp.More && len(resp.Kvs) > 0 {
		out.More = true
		out.PageToken = "u" + strconv.FormatUint(uint64(cursor-1), 10)
		return nil
	}
	if cursor <= upper {
		addClipped(set, req.Uids, cursor, upper)
	}
	return nil
}

// addClipped appends [a, b] intersected with within (empty = everything) to
// set, whose ranges all lie below a.
func addClipped(set, within *storagev1.UIDSet, a, b uint32) {
	add := func(x, y uint32) {
		if n := len(set.Ranges); n > 0 && set.Ranges[n-1].Last+1 == x {
			set.Ranges[n-1].Last = y
			return
		}
		set.Ranges = append(set.Ranges, &storagev1.UIDRange{First: x, Last: y})
	}
	if len(within.GetRanges()) == 0 {
		add(a, b)
		return
	}
	// The client's set, in order, clipped to [a, b].
	var parts [][2]uint32
	for _, r := range within.Ranges {
		lo, hi := r.First, r.Last
		if hi == 0 {
			hi = ^uint32(0)
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		lo, hi = max(lo, a), min(hi, b)
		if lo <= hi {
			parts = append(parts, [2]uint32{lo, hi})
		}
	}
	slices.SortFunc(parts, func(x, y [2]uint32) int { return int(int64(x[0]) - int64(y[0])) })
	for _, p := range parts {
		if n := len(set.Ranges); n > 0 && p[0] <= set.Ranges[n-1].Last {
			set.Ranges[n-1].Last = max(set.Ranges[n-1].Last, p[1])
			continue
		}
		add(p[0], p[1])
	}
}
