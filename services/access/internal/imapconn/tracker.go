package imapconn

// Mailbox change tracking: what each session that has a mailbox selected
// must be told, and when.
//
// Every session has its own view of a mailbox: the messages the client has
// been told of (by SELECT, EXISTS) and not yet told are gone (EXPUNGE),
// numbered 1..n. The mailbox moves on underneath it. RFC 3501 7.4.1 and
// RFC 9051 7.5.1 forbid EXPUNGE responses while no command is in progress
// and during FETCH, STORE and SEARCH (UID variants excepted), because the
// client would misread the sequence numbers in the responses around them.
// So the session view lags: messages the mailbox has expunged stay in it
// (as "dead" positions) until the session may be told, and messages that
// arrived stay out of it until an EXISTS announces them.
//
// Per session the tracker keeps, instead of a queue of events:
//
//   - n, the number of messages in the client's view (what NumMessages
//     returns, what "*" means),
//   - the set of dead positions (session numbers of messages already
//     expunged from the mailbox),
//   - total, the mailbox's current count. The mailbox's messages are the
//     live positions of the view, in order, followed by total-(n-dead)
//     messages not yet announced (arrivals only ever go at the end),
//   - the latest pending flags per live position, and the latest pending
//     mailbox FLAGS.
//
// This coalesces: many flag changes to a message are one pending FETCH, a
// message that arrives and goes before the session heard of it is never
// mentioned, and a FETCH for a message that is then expunged is dropped. A
// session therefore holds at most one pending entry per message of its own
// view (plus one FLAGS list), however many changes it has missed: O(pending
// distinct messages), never O(changes), and nothing at all while it is up
// to date.

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/emersion/go-imap/v2"
)

// UpdateSink receives the untagged responses a session must send. Every
// sequence number is in the session's numbering at the moment of the call,
// taking into account the calls before it. Flag slices are shared between
// sessions and must not be modified.
type UpdateSink interface {
	// WriteExpunge writes "* seqNum EXPUNGE".
	WriteExpunge(seqNum uint32) error
	// WriteNumMessages writes "* n EXISTS".
	WriteNumMessages(n uint32) error
	// WriteMailboxFlags writes "* FLAGS (...)" and the matching
	// PERMANENTFLAGS.
	WriteMailboxFlags(flags []imap.Flag) error
	// WriteMessageFlags writes "* seqNum FETCH (UID uid FLAGS (...))", with
	// MODSEQ when modSeq is not 0 and the client enabled CONDSTORE.
	WriteMessageFlags(seqNum uint32, uid imap.UID, flags []imap.Flag, modSeq uint64) error
}

// ExpungeNoticer is implemented by sinks that must hear of expunges before
// the EXPUNGE (or VANISHED) responses are written: RFC 5267 section 4.3.4
// wants a search context's REMOVEFROM "prior to the expunge notification
// itself, in order that those sequence numbers remain valid".
type ExpungeNoticer interface {
	// BeforeExpunge is called with the messages about to be reported
	// expunged, numbered as the client still knows them, in order.
	BeforeExpunge(gone []Expunged) error
}

// Expunged is a message about to be reported expunged: its sequence number
// in the client's view and its UID (0 if the feeder did not say).
type Expunged struct {
	Seq uint32
	UID imap.UID
}

// ErrSessionClosed is returned by Idle when the session tracker is closed
// while (or before) idling.
var ErrSessionClosed = errors.New("imapconn: mailbox session tracker closed")

// MailboxTracker is the shared state of one mailbox on this pod. It is fed
// the mailbox's changes, in order, and is safe for concurrent use. Invalid
// changes (a sequence number out of range, a count going down) are bugs of
// the feeder and panic: going on would tell clients wrong numbers.
type MailboxTracker struct {
	mu       sync.Mutex
	n        uint32 // current number of messages
	sessions map[*SessionTracker]struct{}
}

// NewMailboxTracker returns a tracker for a mailbox of numMessages messages.
func NewMailboxTracker(numMessages uint32) *MailboxTracker {
	return &MailboxTracker{n: numMessages, sessions: map[*SessionTracker]struct{}{}}
}

// NewSession registers a session that has just been told the mailbox as it
// is now (SELECT/EXAMINE answered with the current EXISTS): the caller takes
// its snapshot of the mailbox and calls NewSession with no change queued in
// between (under the lock it feeds the tracker with). The caller must Close
// it when the session deselects or ends.
func (t *MailboxTracker) NewSession() *SessionTracker {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &SessionTracker{
		mailbox: t,
		n:       t.n,
		total:   t.n,
	}
	t.sessions[s] = struct{}{}
	return s
}

// QueueExpunge records that the message at seqNum (mailbox numbering, before
// the removal) was expunged.
func (t *MailboxTracker) QueueExpunge(seqNum uint32) { t.QueueExpungeUID(seqNum, 0) }

// QueueExpungeUID is QueueExpunge of a message whose UID is known: sessions
// that enabled QRESYNC are told VANISHED uid instead of EXPUNGE (RFC 7162
// 3.2.10).
func (t *MailboxTracker) QueueExpungeUID(seqNum uint32, uid imap.UID) {
	t.QueueExpungeAt(seqNum, uid, 0)
}

// QueueExpungeAt is QueueExpungeUID of an expunge made at modSeq (0 if
// unknown): while a QRESYNC session cannot be told of it yet, it is told
// a HIGHESTMODSEQ below it instead (RFC 5162 erratum 1810, kept by RFC
// 7162), so that a client that disconnects meanwhile does not resume past
// the expunge it never saw.
func (t *MailboxTracker) QueueExpungeAt(seqNum uint32, uid imap.UID, modSeq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seqNum == 0 || seqNum > t.n {
		panic(fmt.Sprintf("imapconn: expunge of message %d in a mailbox of %d", seqNum, t.n))
	}
	t.n--
	for s := range t.sessions {
		s.expunge(seqNum, uint32(uid), modSeq)
	}
}

// QueueNumMessages records that messages were appended: n is the new total.
func (t *MailboxTracker) QueueNumMessages(n uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n < t.n {
		panic(fmt.Sprintf("imapconn: message count going down from %d to %d", t.n, n))
	}
	if n == t.n {
		return
	}
	t.n = n
	for s := range t.sessions {
		s.mu.Lock()
		s.total = n
		s.mu.Unlock()
		s.wake()
	}
}

// QueueMailboxFlags records that the mailbox's FLAGS changed (a keyword was
// created, say). Every session gets the latest list once.
func (t *MailboxTracker) QueueMailboxFlags(flags []imap.Flag) {
	flags = append([]imap.Flag{}, flags...) // never nil: nil means "none pending"
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.sessions {
		s.mu.Lock()
		s.mailboxFlags = flags
		s.mu.Unlock()
		s.wake()
	}
}

// QueueMessageFlags records that the message at seqNum (mailbox numbering)
// now has flags, at modSeq (0 if unknown).
//
// source is the session that made the change, or nil. As in go-imap, the
// source is not sent the change: the command that made it reports the
// message's flags itself (STORE without .SILENT, FETCH setting \Seen), or
// the client asked not to hear of it (.SILENT). One refinement: if the
// source still has a FETCH pending for that message from an earlier change
// by someone else, that pending FETCH is brought up to date rather than left
// to be written, stale, after the command's own response.
//
// Sessions that have not been told of the message yet (it arrived after
// their last EXISTS) are not sent the change: they will fetch the message's
// flags when they learn of it.
func (t *MailboxTracker) QueueMessageFlags(seqNum uint32, uid imap.UID, flags []imap.Flag, modSeq uint64, source *SessionTracker) {
	flags = append([]imap.Flag{}, flags...)
	t.mu.Lock()
	defer t.mu.Unlock()
	if seqNum == 0 || seqNum > t.n {
		panic(fmt.Sprintf("imapconn: flag change of message %d in a mailbox of %d", seqNum, t.n))
	}
	u := flagUpdate{uid: uid, flags: flags, modSeq: modSeq}
	for s := range t.sessions {
		s.messageFlags(seqNum, u, s == source)
	}
}

type flagUpdate struct {
	uid    imap.UID
	flags  []imap.Flag
	modSeq uint64
}

// SessionTracker is one session's view of a selected mailbox. Poll and Idle
// belong to the session's goroutine (one at a time); EncodeSeqNum,
// DecodeSeqNum, NumMessages and Close are safe from any goroutine.
type SessionTracker struct {
	mailbox *MailboxTracker

	mu           sync.Mutex
	n            uint32 // messages in the client's view
	total        uint32 // messages in the mailbox
	dead         deadSet
	deadModSeq   uint64                // the lowest known modseq of the dead positions' expunges
	flags        map[uint32]flagUpdate // by session number, live positions only
	mailboxFlags []imap.Flag           // nil: nothing pending
	idling       bool
	isClosed     bool
	// onWake, if set, is called whenever updates are queued or the
	// session closes (see SetWake).
	onWake func()
}

// live returns the number of live positions of the view. Caller holds mu.
func (s *SessionTracker) live() uint32 { return s.n - uint32(s.dead.len()) }

func (s *SessionTracker) wake() {
	s.mu.Lock()
	fn := s.onWake
	s.mu.Unlock()
	if fn != nil {
		fn()
	}
}

// SetWake makes the tracker call fn (from the goroutine that queues an
// update; fn must not block) whenever updates are queued for the session,
// and when it is closed; nil stops it. It lets an IDLE connection wait
// without a goroutine of its own: fn starts a short-lived writer that
// Polls. If updates are pending already, fn is called at once.
func (s *SessionTracker) SetWake(fn func()) {
	s.mu.Lock()
	s.onWake = fn
	pending := s.isClosed || len(s.flags) > 0 || s.mailboxFlags != nil || s.dead.len() > 0 || s.total != s.n
	s.mu.Unlock()
	if fn != nil && pending {
		fn()
	}
}

// Closed reports whether the session tracker has been closed (the mailbox
// was deleted, or the session deselected it).
func (s *SessionTracker) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isClosed
}

func (s *SessionTracker) expunge(seqNum, uid uint32, modSeq uint64) {
	s.mu.Lock()
	known := seqNum <= s.live()
	if known {
		pos := s.dead.slotOf(seqNum)
		s.dead.insert(pos, uid)
		if modSeq != 0 && (s.deadModSeq == 0 || modSeq < s.deadModSeq) {
			s.deadModSeq = modSeq
		}
		delete(s.flags, pos)
	}
	s.total--
	s.mu.Unlock()
	if known {
		s.wake()
	}
}

func (s *SessionTracker) messageFlags(seqNum uint32, u flagUpdate, own bool) {
	s.mu.Lock()
	queued := false
	if seqNum <= s.live() {
		pos := s.dead.slotOf(seqNum)
		_, pending := s.flags[pos]
		if !own || pending {
			if s.flags == nil {
				s.flags = map[uint32]flagUpdate{}
			}
			s.flags[pos] = u
			queued = true
		}
	}
	s.mu.Unlock()
	if queued {
		s.wake()
	}
}

// Close unregisters the session; pending updates are dropped and a running
// Idle returns ErrSessionClosed. Close may be called more than once.
func (s *SessionTracker) Close() {
	t := s.mailbox
	t.mu.Lock()
	delete(t.sessions, s)
	t.mu.Unlock()
	s.mu.Lock()
	var wake func()
	if !s.isClosed {
		s.isClosed = true
		s.dead, s.deadModSeq = deadSet{}, 0
		s.flags, s.mailboxFlags = nil, nil
		wake = s.onWake
	}
	s.mu.Unlock()
	if wake != nil {
		wake()
	}
}

type fetchOut struct {
	pos uint32
	flagUpdate
}

// Poll writes the session's pending updates: the mailbox FLAGS, then a FETCH
// per message whose flags changed (latest flags only), then, if
// allowExpunge, the EXPUNGEs (highest position first, so that each number is
// the position the client knows), then EXISTS if messages arrived.
//
// With allowExpunge false, no EXPUNGE is written and the session's numbering
// stays as the client knows it (expunged messages keep their numbers); FLAGS,
// FETCHes for messages still present and EXISTS for arrivals are still
// written, numbered in that numbering: EXISTS then counts the messages
// waiting to be expunged too, which never makes it go down. FETCHes for
// messages that are waiting to be expunged are dropped.
//
// The session's view moves on when the updates are taken, before they are
// written; after a write error the view is no longer what the client knows,
// and the session should end.
func (s *SessionTracker) Poll(w UpdateSink, allowExpunge bool) error {
	s.mu.Lock()
	if s.isClosed {
		s.mu.Unlock()
		return nil
	}
	mailboxFlags := s.mailboxFlags
	s.mailboxFlags = nil
	var fetches []fetchOut
	if len(s.flags) > 0 {
		fetches = make([]fetchOut, 0, len(s.flags))
		for pos, u := range s.flags {
			fetches = append(fetches, fetchOut{pos, u})
		}
		slices.SortFunc(fetches, func(a, b fetchOut) int { return cmp.Compare(a.pos, b.pos) })
		clear(s.flags)
		if len(fetches) > 64 {
			s.flags = nil // let a flood's map go
		}
	}
	var expunges, vanished []uint32
	var gone []Expunged
	vs, _ := w.(vanishedSink)
	es, _ := w.(ExpungeNoticer)
	if allowExpunge && s.dead.len() > 0 {
		if es != nil {
			gone = make([]Expunged, 0, s.dead.len())
			s.dead.each(func(pos, uid uint32) { gone = append(gone, Expunged{Seq: pos, UID: imap.UID(uid)}) })
		}
		if vs != nil && vs.Vanished() {
			vanished = s.dead.uids()
		} else {
			expunges = s.dead.descending()
		}
		s.n -= uint32(s.dead.len())
		s.dead, s.deadModSeq = deadSet{}, 0
	}
	// Expunges held back from a QRESYNC session: the HIGHESTMODSEQ it may
	// resume from stays below them.
	var holdModSeq uint64
	if vs != nil && vs.Vanished() && s.dead.len() > 0 && s.deadModSeq > 1 {
		holdModSeq = s.deadModSeq - 1
	}
	var exists uint32
	if live := s.live(); s.total > live {
		s.n += s.total - live
		exists = s.n
	}
	s.mu.Unlock()

	if mailboxFlags != nil {
		if err := w.WriteMailboxFlags(mailboxFlags); err != nil {
			return err
		}
	}
	for _, f := range fetches {
		if err := w.WriteMessageFlags(f.pos, f.uid, f.flags, f.modSeq); err != nil {
			return err
		}
	}
	if len(gone) > 0 {
		if err := es.BeforeExpunge(gone); err != nil {
			return err
		}
	}
	for _, pos := range expunges {
		if err := w.WriteExpunge(pos); err != nil {
			return err
		}
	}
	if len(vanished) > 0 {
		if err := vs.WriteVanished(vanished); err != nil {
			return err
		}
	}
	if holdModSeq != 0 {
		if err := vs.WriteHighestModSeq(holdModSeq); err != nil {
			return err
		}
	}
	if exists != 0 {
		return w.WriteNumMessages(exists)
	}
	return nil
}

// Idle writes updates as they are queued, expunges included (RFC 2177),
// until stop is closed (it then returns nil) or the session is closed (it
// returns ErrSessionClosed). Only one Idle may run per session.
func (s *SessionTracker) Idle(w UpdateSink, stop <-chan struct{}) error {
	s.mu.Lock()
	switch {
	case s.isClosed:
		s.mu.Unlock()
		return ErrSessionClosed
	case s.idling:
		s.mu.Unlock()
		return errors.New("imapconn: concurrent Idle on one session")
	}
	s.idling = true
	s.mu.Unlock()
	wake := make(chan struct{}, 1)
	s.SetWake(func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	defer func() {
		s.SetWake(nil)
		s.mu.Lock()
		s.idling = false
		s.mu.Unlock()
	}()
	for {
		if s.Closed() {
			return ErrSessionClosed
		}
		if err := s.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-wake:
		}
	}
}

// EncodeSeqNum maps a mailbox sequence number to the session's: 0 if the
// client has not been told of the message yet (or seqNum is out of range).
func (s *SessionTracker) EncodeSeqNum(seqNum uint32) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seqNum == 0 || seqNum > s.live() {
		return 0
	}
	return s.dead.slotOf(seqNum)
}

// DecodeSeqNum maps a session sequence number to the mailbox's: 0 if the
// message has been expunged already (the client has not been told yet) or
// seqNum is beyond the client's view.
func (s *SessionTracker) DecodeSeqNum(seqNum uint32) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seqNum == 0 || seqNum > s.n {
		return 0
	}
	le, found := s.dead.rank(seqNum)
	if found {
		return 0
	}
	return seqNum - uint32(le)
}

// NumMessages returns the number of messages in the client's view, which
// is what "*" stands for in its sequence sets.
func (s *SessionTracker) NumMessages() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// deadSet is the set of a session's dead positions: an order-statistics
// treap, so that every operation is O(log d) whatever order expunges come
// in (emptying a large mailbox back to front would be quadratic with a
// sorted slice), and its size is O(d), not O(mailbox).
type deadSet struct{ root *deadNode }

type deadNode struct {
	pos         uint32
	uid         uint32 // 0 if the feeder did not say
	prio        uint32
	size        int
	left, right *deadNode
}

func (n *deadNode) sz() int {
	if n == nil {
		return 0
	}
	return n.size
}

func (n *deadNode) fix() { n.size = 1 + n.left.sz() + n.right.sz() }

func (d *deadSet) len() int { return d.root.sz() }

// deadSplit returns the nodes below pos and the nodes at or above it.
func deadSplit(n *deadNode, pos uint32) (l, r *deadNode) {
	if n == nil {
		return nil, nil
	}
	if n.pos < pos {
		n.right, r = deadSplit(n.right, pos)
		n.fix()
		return n, r
	}
	l, n.left = deadSplit(n.left, pos)
	n.fix()
	return l, n
}

// deadMerge joins two treaps, every node of l below every node of r.
func deadMerge(l, r *deadNode) *deadNode {
	switch {
	case l == nil:
		return r
	case r == nil:
		return l
	case l.prio > r.prio:
		l.right = deadMerge(l.right, r)
		l.fix()
		return l
	default:
		r.left = deadMerge(l, r.left)
		r.fix()
		return r
	}
}

// insert adds pos (the message uid), which must not be in the set.
func (d *deadSet) insert(pos, uid uint32) {
	l, r := deadSplit(d.root, pos)
	d.root = deadMerge(deadMerge(l, &deadNode{pos: pos, uid: uid, prio: rand.Uint32(), size: 1}), r)
}

// rank returns how many positions are <= pos and whether pos is one.
func (d *deadSet) rank(pos uint32) (le int, found bool) {
	for n := d.root; n != nil; {
		switch {
		case n.pos == pos:
			return le + n.left.sz() + 1, true
		case n.pos < pos:
			le += n.left.sz() + 1
			n = n.right
		default:
			n = n.left
		}
	}
	return le, false
}

// slotOf returns the position of the m-th live position (m >= 1): m plus
// the number of dead positions before it. A dead node at in-order index i
// has pos-i-1 live positions before it, which never decreases in order.
func (d *deadSet) slotOf(m uint32) uint32 {
	before := 0 // dead nodes known to come before the m-th live position
	base := 0   // in-order index of the current subtree's first node
	for n := d.root; n != nil; {
		i := base + n.left.sz()
		if int64(n.pos)-int64(i)-1 < int64(m) {
			before = i + 1
			base = i + 1
			n = n.right
		} else {
			n = n.left
		}
	}
	return m + uint32(before)
}

// each calls fn with every position and its UID (0 if unknown), in
// position order.
func (d *deadSet) each(fn func(pos, uid uint32)) {
	var walk func(*deadNode)
	walk = func(n *deadNode) {
		for n != nil {
			walk(n.left)
			fn(n.pos, n.uid)
			n = n.right
		}
	}
	walk(d.root)
}

// uids returns the known UIDs of the positions, in position order (which
// is UID order).
func (d *deadSet) uids() []uint32 {
	out := make([]uint32, 0, d.len())
	var walk func(*deadNode)
	walk = func(n *deadNode) {
		for n != nil {
			walk(n.left)
			if n.uid != 0 {
				out = append(out, n.uid)
			}
			n = n.right
		}
	}
	walk(d.root)
	return out
}

// uidsIn returns the UIDs within [first, last], ascending. UIDs ascend with
// positions, so a subtree wholly outside the range is skipped (a node
// without its UID says nothing about its subtrees).
func (d *deadSet) uidsIn(first, last uint32) []uint32 {
	var out []uint32
	var walk func(*deadNode)
	walk = func(n *deadNode) {
		if n == nil {
			return
		}
		if n.uid == 0 || n.uid >= first {
			walk(n.left)
		}
		if n.uid != 0 && n.uid >= first && n.uid <= last {
			out = append(out, n.uid)
		}
		if n.uid == 0 || n.uid <= last {
			walk(n.right)
		}
	}
	walk(d.root)
	return out
}

// PendingExpungesIn returns the UIDs within [first, last] of the messages
// expunged from the mailbox that the session has not been told of yet, in
// UID order (an expunge queued without its UID is left out). Its cost is
// that of the UIDs it returns, not of every expunge pending.
func (s *SessionTracker) PendingExpungesIn(first, last uint32) []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead.uidsIn(first, last)
}

// descending returns the positions, highest first.
func (d *deadSet) descending() []uint32 {
	out := make([]uint32, 0, d.len())
	var walk func(*deadNode)
	walk = func(n *deadNode) {
		for n != nil {
			walk(n.right)
			out = append(out, n.pos)
			n = n.left
		}
	}
	walk(d.root)
	return out
}
