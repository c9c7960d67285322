package service

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Reading a page of a big mailbox. etcd walks every key of a range to count
// them, even when a limit cuts the answer short, so "the next 1 000 entries
// from here to the end of the mailbox" costs the whole rest of the mailbox:
// paging through 100 000 entries that way is quadratic. readEntries reads
// through windows of UIDs instead (keys are zero-padded UIDs), each costing
// only its own keys, and widens the window while it comes back sparse (a
// mailbox whose old messages were expunged).

// maxWindow bounds how wide a window grows, in UIDs.
const maxWindow = 1 << 24

// readEntries returns up to limit index entries of a mailbox with UIDs in
// [from, last] (inclusive), in UID order, at revision rev (0: now). more
// says whether entries up to last may remain; next is the UID to go on from.
func (s *Server) readEntries(ctx context.Context, account, mailboxID string, from, last uint32, limit int, rev int64) (kvs []*mvccpb.KeyValue, next uint32, more bool, err error) {
	if from == 0 {
		from = 1
	}
	window := uint64(max(limit, 64))
	for len(kvs) < limit {
		end := min(uint64(from)+window, uint64(last)+1) // exclusive
		opts := []clientv3.OpOption{clientv3.WithRange(s.entryKey(account, mailboxID, end)), clientv3.WithLimit(int64(limit - len(kvs)))}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.etcd.Get(ctx, s.entryKey(account, mailboxID, uint64(from)), opts...)
		if err != nil {
			return nil, 0, false, err
		}
		kvs = append(kvs, resp.Kvs...)
		if resp.More {
			// The limit cut this window: go on after its last entry.
			return kvs, uidFromKey(string(kvs[len(kvs)-1].Key)) + 1, true, nil
		}
		if end > uint64(last) {
			return kvs, 0, false, nil
		}
		from = uint32(end)
		if uint64(len(resp.Kvs)) < window/2 {
			window = min(window*4, maxWindow)
		}
	}
	return kvs, from, true, nil
}

// entryKey is Message for UIDs up to 2^32 (an exclusive end past the last
// possible UID).
func (s *Server) entryKey(account, mailboxID string, uid uint64) string {
	return s.keys.Messages(account, mailboxID) + fmt.Sprintf("%010d", uid)
}

// spanGap is the widest run of UIDs outside a set that readEntriesIn reads
// rather than skips (uidSpans joins spans this close): below it, another
// etcd request costs more than the entries it would save.
const spanGap = 64

// spansPerRead bounds the etcd requests one readEntriesIn makes, one per
// span: a set of thousands of scattered UIDs is read a page at a time like
// any other.
const spansPerRead = 16

// readEntriesIn is readEntries over spans only (nil: every UID), so that a
// sparse set (a few messages picked across a large mailbox, as a client's
// STORE of its selection is) reads those messages, not the whole mailbox
// between them. The caller still filters by the exact set: a joined gap is
// read too.
func (s *Server) readEntriesIn(ctx context.Context, account, mailboxID string, spans []uidSpan, from, last uint32, limit int, rev int64) (kvs []*mvccpb.KeyValue, next uint32, more bool, err error) {
	if spans == nil {
		return s.readEntries(ctx, account, mailboxID, from, last, limit, rev)
	}
	// The first span that reaches from; each after it starts higher.
	first, _ := slices.BinarySearchFunc(spans, from, func(sp uidSpan, uid uint32) int { return cmp.Compare(sp.last, uid) })
	requests := 0
	for _, sp := range spans[first:] {
		lo, hi := max(sp.first, from), min(sp.last, last)
		if lo > hi {
			break // this span, and every later one, starts past last
		}
		if requests == spansPerRead || len(kvs) >= limit {
			return kvs, lo, true, nil
		}
		requests++
		page, pageNext, pageMore, err := s.readEntries(ctx, account, mailboxID, lo, hi, limit-len(kvs), rev)
		if err != nil {
			return nil, 0, false, err
		}
		kvs = append(kvs, page...)
		if pageMore {
			return kvs, pageNext, true, nil
		}
	}
	return kvs, 0, false, nil
}
