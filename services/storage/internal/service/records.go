package service

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// getRecord reads and decodes key into m within tx; ok is false if absent.
func getRecord(tx *etcdtx.Tx, key string, m proto.Message) (bool, error) {
	b, ok, err := tx.Get(key)
	if err != nil || !ok {
		return false, err
	}
	return true, proto.Unmarshal(b, m)
}

func (s *Server) loadMailbox(tx *etcdtx.Tx, account, mailboxID string) (*storagev1.Mailbox, error) {
	if mailboxID == "" {
		return nil, errInvalid("mailbox id is required")
	}
	mb := &storagev1.Mailbox{}
	ok, err := getRecord(tx, s.keys.Mailbox(account, mailboxID), mb)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fail(reasonMailboxNotFound, "no such mailbox")
	}
	return mb, nil
}

func (s *Server) saveMailbox(tx *etcdtx.Tx, account string, mb *storagev1.Mailbox) {
	tx.Put(s.keys.Mailbox(account, mb.Id), marshal(mb))
}

// loadQuota reads the account's quota record; it exists exactly as long as the
// account does, which makes it the account's existence check in hot paths.
func (s *Server) loadQuota(tx *etcdtx.Tx, account string) (*storagev1.Quota, error) {
	if account == "" {
		return nil, errInvalid("account id is required")
	}
	q := &storagev1.Quota{}
	ok, err := getRecord(tx, s.keys.Quota(account), q)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fail(reasonAccountNotFound, "no such account")
	}
	return q, nil
}

func (s *Server) saveQuota(tx *etcdtx.Tx, account string, q *storagev1.Quota) {
	tx.Put(s.keys.Quota(account), marshal(q))
}

func (s *Server) loadAccount(tx *etcdtx.Tx, account string) (*records.AccountRecord, error) {
	if account == "" {
		return nil, errInvalid("account id is required")
	}
	rec := &records.AccountRecord{}
	ok, err := getRecord(tx, s.keys.Account(account), rec)
	if err != nil {
		return nil, err
	}
	if !ok || rec.Deleting {
		return nil, fail(reasonAccountNotFound, "no such account")
	}
	return rec, nil
}

// Body references. bodies/<key> counts the index entries and queue items
// that reference a body. Only two things create the record: the first
// commit of a fresh upload (newBodyRef, which needs the upload's intent) and
// a later step of the same request while its intent lives (addBodyRefs).
// Nothing else may bring a missing record back: a body whose count reached
// zero is on a freed list and will be deleted.

// errBodyGone means a body reference record is missing where a live entry
// still names it: a bug, reported as such rather than papered over.
func errBodyGone(key string) error {
	return fmt.Errorf("body %s has no reference record", key)
}

// newBodyRef stages the reference record of a freshly uploaded body. The
// upload's intent must still exist: a replica whose lease ran out (its
// intents gone, its body possibly swept as an orphan) cannot commit.
func (s *Server) newBodyRef(tx *etcdtx.Tx, up *upload, refs uint32) error {
	// Assumed, not read: the commit requires the intent anyway, and it is
	// read only if that fails (one round trip less per message).
	if ok, err := tx.Assume(s.keys.Upload(up.key)); err != nil {
		return err
	} else if !ok {
		go s.leases.checkLost(context.Background()) // not in the batch's way
		return fail(reasonTemporary, "the upload took too long (its intent expired); try again")
	}
	tx.Put(s.keys.Body(up.key), marshal(&records.BodyRef{Refs: refs}))
	return nil
}

// addBodyRefs adds n references to a body uploaded by this request: its
// record may have gone to zero (every earlier copy expunged) while the
// intent kept the body alive, and is then created again.
func (s *Server) addBodyRefs(tx *etcdtx.Tx, up *upload, n uint32) error {
	ref := &records.BodyRef{}
	ok, err := getRecord(tx, s.keys.Body(up.key), ref)
	if err != nil {
		return err
	}
	if !ok {
		return s.newBodyRef(tx, up, n)
	}
	ref.Refs += n
	tx.Put(s.keys.Body(up.key), marshal(ref))
	return nil
}

// finishUpload stages the end of an upload's intent: the body is now kept
// alive by its references alone.
func (s *Server) finishUpload(tx *etcdtx.Tx, up *upload) {
	tx.Delete(s.keys.Upload(up.key))
}

// retainBody adds one reference to a body that a live entry references.
func (s *Server) retainBody(tx *etcdtx.Tx, key string) error {
	ref := &records.BodyRef{}
	ok, err := getRecord(tx, s.keys.Body(key), ref)
	if err != nil {
		return err
	}
	if !ok {
		return errBodyGone(key)
	}
	ref.Refs++
	tx.Put(s.keys.Body(key), marshal(ref))
	return nil
}

// releaseBody drops one reference; a body that loses its last one goes on
// freed, which the caller stages with stageFreed in the same transaction.
func (s *Server) releaseBody(tx *etcdtx.Tx, key string, freed *[]string) error {
	ref := &records.BodyRef{}
	ok, err := getRecord(tx, s.keys.Body(key), ref)
	if err != nil {
		return err
	}
	if !ok {
		return errBodyGone(key)
	}
	if ref.Refs <= 1 {
		tx.Delete(s.keys.Body(key))
		*freed = append(*freed, key)
		return nil
	}
	ref.Refs--
	tx.Put(s.keys.Body(key), marshal(ref))
	return nil
}

// stageFreed records the bodies a step unreferenced, for the sweeper.
func (s *Server) stageFreed(tx *etcdtx.Tx, freed []string) {
	if len(freed) == 0 {
		return
	}
	now := time.Now()
	tx.Put(s.keys.Freed(now.UnixMilli(), newID()), marshal(&records.FreedBodies{BodyKeys: freed, FreedAt: timestamppb.New(now)}))
}

// checkQuota fails with OVER_QUOTA if adding bytes and messages would pass
// a limit.
func checkQuota(q *storagev1.Quota, bytes, messages uint64) error {
	if q.LimitBytes > 0 && q.UsedBytes+bytes > q.LimitBytes {
		return fail(reasonOverQuota, "quota exceeded: %d of %d bytes used, %d more needed", q.UsedBytes, q.LimitBytes, bytes)
	}
	if q.LimitMessages > 0 && q.UsedMessages+messages > q.LimitMessages {
		return fail(reasonOverQuota, "quota exceeded: %d of %d messages, %d more needed", q.UsedMessages, q.LimitMessages, messages)
	}
	return nil
}

// addMessage gives msg the mailbox's next UID and modseq, stages it, and moves
// the mailbox counters and the quota usage. The caller saves mb and q.
func (s *Server) addMessage(tx *etcdtx.Tx, account string, mb *storagev1.Mailbox, q *storagev1.Quota, msg *storagev1.Message) error {
	if err := checkQuota(q, msg.Size, 1); err != nil {
		return err
	}
	if err := s.placeMessage(tx, account, mb, msg); err != nil {
		return err
	}
	q.UsedBytes += msg.Size
	q.UsedMessages++
	return nil
}

// placeMessage gives msg the mailbox's next UID and modseq, stages it and
// moves the mailbox counters (not the quota: see addMessage).
func (s *Server) placeMessage(tx *etcdtx.Tx, account string, mb *storagev1.Mailbox, msg *storagev1.Message) error {
	if err := checkWritable(account, mb, ""); err != nil {
		return err
	}
	if mb.UidNext == 0 || mb.UidNext == ^uint32(0) {
		return fail(reasonTooMany, "mailbox has run out of UIDs")
	}
	msg.Uid = mb.UidNext
	mb.UidNext++
	mb.HighestModseq++
	msg.Modseq = mb.HighestModseq
	mb.Messages++
	mb.Size += msg.Size
	if !hasFlag(msg.Flags, `\Seen`) {
		mb.Unseen++
	}
	msg.SaveDate = timestamppb.Now() // APPEND, COPY, MOVE, delivery (RFC 8514)
	tx.Put(s.keys.Message(account, mb.Id, msg.Uid), encodeEntry(msg))
	return nil
}

// removeMessage stages the expunge of msg and releases its body reference
// (onto freed). The caller has already bumped mb.HighestModseq for this step.
func (s *Server) removeMessage(tx *etcdtx.Tx, account string, mb *storagev1.Mailbox, q *storagev1.Quota, msg *storagev1.Message, freed *[]string) error {
	tx.Delete(s.keys.Message(account, mb.Id, msg.Uid))
	mb.Messages--
	mb.Size -= min(mb.Size, msg.Size)
	if !hasFlag(msg.Flags, `\Seen`) && mb.Unseen > 0 {
		mb.Unseen--
	}
	if q != nil { // nil: the account is being deleted
		q.UsedBytes -= min(q.UsedBytes, msg.Size)
		if q.UsedMessages > 0 {
			q.UsedMessages--
		}
	}
	return s.releaseBody(tx, msg.BodyKey, freed)
}

// systemFlags are the IMAP system flags, in their canonical spelling.
var systemFlags = map[string]string{
	`\seen`: `\Seen`, `\answered`: `\Answered`, `\flagged`: `\Flagged`,
	`\deleted`: `\Deleted`, `\draft`: `\Draft`,
}

// normalizeFlags validates flags, spells system flags canonically, drops
// duplicates (case-insensitively, as IMAP compares them) and sorts.
func normalizeFlags(flags []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, f := range flags {
		if f == "" || len(f) > 128 {
			return nil, errInvalid("invalid flag %q", f)
		}
		lower := strings.ToLower(f)
		if strings.HasPrefix(f, `\`) {
			canon, ok := systemFlags[lower]
			if !ok {
				return nil, errInvalid("unknown system flag %q", f)
			}
			f = canon
		} else {
			for _, c := range f {
				// RFC 9051 atom: no specials, controls, spaces or non-ASCII.
				if c <= ' ' || c >= 0x7f || strings.ContainsRune(`(){%*"\]`, c) {
					return nil, errInvalid("invalid keyword %q", f)
				}
			}
		}
		if !seen[lower] {
			seen[lower] = true
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out, nil
}

func hasFlag(flags []string, flag string) bool {
	for _, f := range flags {
		if strings.EqualFold(f, flag) {
			return true
		}
	}
	return false
}

// applyFlags computes the flags after a STORE.
func applyFlags(current []string, op storagev1.StoreFlagsRequest_Op, flags []string) []string {
	switch op {
	case storagev1.StoreFlagsRequest_OP_REPLACE:
		return append([]string(nil), flags...)
	case storagev1.StoreFlagsRequest_OP_ADD:
		out := append([]string(nil), current...)
		for _, f := range flags {
			if !hasFlag(out, f) {
				out = append(out, f)
			}
		}
		sort.Strings(out)
		return out
	default: // remove
		var out []string
		for _, f := range current {
			if !hasFlag(flags, f) {
				out = append(out, f)
			}
		}
		return out
	}
}

func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// uidSpan is an inclusive range of UIDs.
type uidSpan struct{ first, last uint32 }

// uidSpans turns a UID set into sorted, disjoint spans: reversed ranges
// ("910:900") turned round, "n:*" up to the highest UID, and spans at most
// join UIDs apart joined (1: those that touch). nil for an empty set.
func uidSpans(set *storagev1.UIDSet, join uint32) []uidSpan {
	var spans []uidSpan
	for _, r := range set.GetRanges() {
		first, last := r.First, r.Last
		if last == 0 {
			last = ^uint32(0) // "n:*"
		}
		if first > last {
			first, last = last, first
		}
		spans = append(spans, uidSpan{max(first, 1), last})
	}
	slices.SortFunc(spans, func(a, b uidSpan) int { return cmp.Compare(a.first, b.first) })
	var out []uidSpan
	for _, sp := range spans {
		if n := len(out); n > 0 && uint64(sp.first) <= uint64(out[n-1].last)+uint64(join) {
			out[n-1].last = max(out[n-1].last, sp.last)
			continue
		}
		out = append(out, sp)
	}
	return out
}

// uidMatcher returns a membership test for set (empty: every UID) that
// costs O(log ranges) per UID: a sparse selection of a big mailbox may have
// tens of thousands of ranges, tested against every entry scanned.
func uidMatcher(set *storagev1.UIDSet) func(uint32) bool {
	spans := uidSpans(set, 1)
	if spans == nil {
		return func(uint32) bool { return true }
	}
	return func(uid uint32) bool {
		i := sort.Search(len(spans), func(i int) bool { return spans[i].last >= uid })
		return i < len(spans) && spans[i].first <= uid
	}
}

// uidSetOf builds a UID set from a sorted list, merging runs into ranges.
func uidSetOf(uids []uint32) *storagev1.UIDSet {
	set := &storagev1.UIDSet{}
	for _, u := range uids {
		if n := len(set.Ranges); n > 0 && set.Ranges[n-1].Last+1 == u {
			set.Ranges[n-1].Last = u
			continue
		}
		set.Ranges = append(set.Ranges, &storagev1.UIDRange{First: u, Last: u})
	}
	return set
}

func timeOr(ts *timestamppb.Timestamp, def time.Time) time.Time {
	if ts == nil || !ts.IsValid() {
		return def
	}
	return ts.AsTime()
}
