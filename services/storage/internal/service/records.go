package service

import (
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

// retainBody adds one reference to a body (creating its record if new).
func (s *Server) retainBody(tx *etcdtx.Tx, key string, size uint64) error {
	ref := &records.BodyRef{}
	ok, err := getRecord(tx, s.keys.Body(key), ref)
	if err != nil {
		return err
	}
	if !ok {
		ref = &records.BodyRef{Size: size, CreatedAt: timestamppb.Now()}
	}
	ref.Refs++
	tx.Put(s.keys.Body(key), marshal(ref))
	return nil
}

// releaseBody drops one reference; the last one turns the record into a gc
// marker for the sweeper.
func (s *Server) releaseBody(tx *etcdtx.Tx, key string) error {
	ref := &records.BodyRef{}
	ok, err := getRecord(tx, s.keys.Body(key), ref)
	if err != nil {
		return err
	}
	if !ok || ref.Refs <= 1 {
		tx.Delete(s.keys.Body(key))
		tx.Put(s.keys.GCMarker(key), marshal(&records.GCMarker{UnreferencedAt: timestamppb.Now()}))
		return nil
	}
	ref.Refs--
	tx.Put(s.keys.Body(key), marshal(ref))
	return nil
}

// checkQuota fails with OVER_QUOTA if adding size bytes and one message would
// pass a limit.
func checkQuota(q *storagev1.Quota, size uint64) error {
	if q.LimitBytes > 0 && q.UsedBytes+size > q.LimitBytes {
		return fail(reasonOverQuota, "quota exceeded: %d of %d bytes used", q.UsedBytes, q.LimitBytes)
	}
	if q.LimitMessages > 0 && q.UsedMessages+1 > q.LimitMessages {
		return fail(reasonOverQuota, "quota exceeded: %d of %d messages", q.UsedMessages, q.LimitMessages)
	}
	return nil
}

// addMessage gives msg the mailbox's next UID and modseq, stages it, and moves
// the mailbox counters and the quota usage. The caller saves mb and q.
func (s *Server) addMessage(tx *etcdtx.Tx, account string, mb *storagev1.Mailbox, q *storagev1.Quota, msg *storagev1.Message) error {
	if err := checkQuota(q, msg.Size); err != nil {
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
	tx.Put(s.keys.Message(account, mb.Id, msg.Uid), marshal(msg))
	return nil
}

// removeMessage stages the expunge of msg and releases its body reference.
// The caller has already bumped mb.HighestModseq for this step.
func (s *Server) removeMessage(tx *etcdtx.Tx, account string, mb *storagev1.Mailbox, q *storagev1.Quota, msg *storagev1.Message) error {
	tx.Delete(s.keys.Message(account, mb.Id, msg.Uid))
	mb.Messages--
	mb.Size -= min(mb.Size, msg.Size)
	if !hasFlag(msg.Flags, `\Seen`) && mb.Unseen > 0 {
		mb.Unseen--
	}
	q.UsedBytes -= min(q.UsedBytes, msg.Size)
	if q.UsedMessages > 0 {
		q.UsedMessages--
	}
	return s.releaseBody(tx, msg.BodyKey)
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

// inSet reports whether uid is in set (an empty set matches nothing).
func inSet(set *storagev1.UIDSet, uid uint32) bool {
	for _, r := range set.GetRanges() {
		last := r.Last
		if last == 0 {
			last = ^uint32(0)
		}
		if uid >= r.First && uid <= last {
			return true
		}
	}
	return false
}

func timeOr(ts *timestamppb.Timestamp, def time.Time) time.Time {
	if ts == nil || !ts.IsValid() {
		return def
	}
	return ts.AsTime()
}
