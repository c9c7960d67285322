package service

import (
	"context"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
)

// Bulk changes. STORE, COPY, MOVE and EXPUNGE may name any number of
// messages (EXPUNGE of a 100 000-message Trash is an ordinary request), but
// one etcd transaction holds at most etcdtx.MaxOps operations and
// etcdtx.MaxBytes bytes. So a bulk change runs in steps: each step is one
// transaction that takes as many messages as the budget left in it allows,
// from the cost of each message for this change. The entries are scanned
// outside the transactions, a page at a time; a step re-reads only its own
// candidates (every change of an entry also puts the mailbox record, which
// the step compares, so a conflict retries the step, never the scan).

// scanPage is how many index entries one scan of a bulk change reads.
const scanPage = 1000

// stepWindow bounds the candidates one step looks at: no step can take
// more messages than etcd has operations.
const stepWindow = etcdtx.MaxOps

// What a step keeps for its fixed writes: mailbox records, the quota, the
// freed-bodies record.
const (
	stepReserveOps   = 8
	stepReserveBytes = 16 << 10
)

// opCost is what one operation on a key costs on the wire besides the key
// and value (see etcdtx).
const opCost = 16

// bulkChange describes one bulk change to runBulk.
type bulkChange struct {
	// opID is the staging operation doing the change ("" for any other):
	// a mailbox held by another operation's staging makes a step wait.
	opID string
	// readOnly says the change does not write the scanned mailbox (the
	// source of a COPY): another operation's staging there does not stop it.
	readOnly bool
	// staged selects the staged entries (UIDs at and above UIDNEXT) instead
	// of the visible ones.
	staged bool
	// match selects the entries to change (nil: every entry in the set).
	match func(*storagev1.Message) bool
	// cost is what one message adds to a step: the larger of its compares
	// and writes, and its bytes.
	cost func(*storagev1.Message) (ops, bytes int)
	// stage stages the change of msgs, already sized to fit, in tx. mb is
	// the mailbox record as tx read it (compared at commit); stage saves it.
	// It may run more than once for one step (conflicts).
	stage func(tx *etcdtx.Tx, mb *storagev1.Mailbox, msgs []*storagev1.Message) error
	// committed is called once per committed step, with its messages.
	committed func(msgs []*storagev1.Message)
}

// runBulk applies c to the entries of one mailbox that are in set (empty:
// all) and match, in UID order, step by step. mailboxKey is the key of the
// mailbox record (a mailbox being deleted has it elsewhere).
func (s *Server) runBulk(ctx context.Context, account, mailboxID, mailboxKey string, set *storagev1.UIDSet, c bulkChange) error {
	if account == "" || mailboxID == "" {
		return errInvalid("account and mailbox ids are required")
	}
	first, last := uidBounds(set)
	if last == 0 {
		last = ^uint32(0)
	}
	from := max(first, 1)
	inSet := uidMatcher(set)
	spans := uidSpans(set, spanGap)
	// Only entries below UIDNEXT exist for clients; those above belong to a
	// staging (see staging.go).
	var uidNext uint32
	wanted := func(m *storagev1.Message) bool {
		return inSet(m.Uid) && (m.Uid < uidNext) != c.staged && (c.match == nil || c.match(m))
	}
	for {
		mbResp, err := s.etcd.Get(ctx, mailboxKey)
		if err != nil {
			return err
		}
		if len(mbResp.Kvs) == 0 {
			return fail(reasonMailboxNotFound, "no such mailbox")
		}
		scanned := &storagev1.Mailbox{}
		if err := proto.Unmarshal(mbResp.Kvs[0].Value, scanned); err != nil {
			return err
		}
		uidNext = scanned.UidNext
		upTo := last
		if c.staged {
			from = max(from, uidNext)
		} else if uidNext > 0 {
			upTo = min(last, uidNext-1)
		}
		if from > upTo || uidNext == 0 {
			return nil
		}
		page, next, more, err := s.readEntriesIn(ctx, account, mailboxID, spans, from, upTo, scanPage, mbResp.Header.Revision)
		if err != nil {
			return err
		}
		var candidates []*storagev1.Message
		for _, kv := range page {
			m, err := decodeEntryKV(kv.Key, kv.Value)
			if err != nil {
				return err
			}
			if wanted(m) {
				candidates = append(candidates, m)
			}
		}
		for len(candidates) > 0 {
			var done []*storagev1.Message
			_, err := s.commitWaiting(ctx, account, func(tx *etcdtx.Tx) error {
				done = nil
				mb := &storagev1.Mailbox{}
				if ok, err := getRecord(tx, mailboxKey, mb); err != nil {
					return err
				} else if !ok {
					return fail(reasonMailboxNotFound, "no such mailbox")
				}
				if !c.readOnly {
					if err := checkWritable(account, mb, c.opID); err != nil {
						return err
					}
				}
				uidNext = mb.UidNext
				msgs, err := s.rereadEntries(tx, account, mailboxID, candidates[:min(len(candidates), stepWindow)], wanted)
				if err != nil || len(msgs) == 0 {
					return err
				}
				ops, bytes := tx.Room()
				ops, bytes = ops-stepReserveOps, bytes-stepReserveBytes
				n := 0
				for ; n < len(msgs); n++ {
					o, b := c.cost(msgs[n])
					if o > ops || b > bytes {
						break
					}
					ops, bytes = ops-o, bytes-b
				}
				if n == 0 {
					return errDeferred // the committer tries it in a transaction of its own
				}
				if err := c.stage(tx, mb, msgs[:n]); err != nil {
					return err
				}
				done = msgs[:n]
				return nil
			})
			if err != nil {
				return err
			}
			window := candidates[:min(len(candidates), stepWindow)]
			if len(done) == 0 {
				// None of the window is left to change (expunged or changed
				// by someone else meanwhile): move past it.
				candidates = candidates[len(window):]
				continue
			}
			c.committed(done)
			lastUID := done[len(done)-1].Uid
			for len(candidates) > 0 && candidates[0].Uid <= lastUID {
				candidates = candidates[1:]
			}
		}
		if !more {
			return nil
		}
		from = next
	}
}

// rereadEntries reads the current entries of candidates within tx (covered
// by the mailbox record's compare) and keeps those that still exist and are
// wanted, in order.
func (s *Server) rereadEntries(tx *etcdtx.Tx, account, mailboxID string, candidates []*storagev1.Message, wanted func(*storagev1.Message) bool) ([]*storagev1.Message, error) {
	keyList := make([]string, len(candidates))
	for i, m := range candidates {
		keyList[i] = s.keys.Message(account, mailboxID, m.Uid)
	}
	values, err := tx.ReadCovered(keyList)
	if err != nil {
		return nil, err
	}
	var out []*storagev1.Message
	for i, v := range values {
		if v == nil {
			continue
		}
		m, err := decodeEntry(candidates[i].Uid, v)
		if err != nil {
			return nil, err
		}
		if wanted(m) {
			out = append(out, m)
		}
	}
	return out, nil
}

// entryCost is what writing msg's entry costs (key and value).
func (s *Server) entryCost(account, mailboxID string, m *storagev1.Message) int {
	return len(s.keys.Message(account, mailboxID, m.Uid)) + len(encodeEntry(m)) + opCost
}

// refCost is what reading and rewriting (or deleting and freeing) a body's
// reference record costs.
func (s *Server) refCost(bodyKey string) int {
	const refRecord = 48 // a BodyRef, generously
	return 2*(len(s.keys.Body(bodyKey))+opCost) + refRecord + len(bodyKey) + 4
}
