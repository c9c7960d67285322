package imapd

import (
	"strings"

	"github.com/emersion/go-imap/v2"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
)

// Search contexts (RFC 5267 CONTEXT=SEARCH): a SEARCH with RETURN (UPDATE)
// leaves a context on the selected mailbox, and from then on every poll
// tells the client which messages entered the result (ADDTO) and which
// left it (REMOVEFROM), "whether by new messages arriving in the mailbox,
// metadata such as flags being changed, or messages being expunged"
// (section 4.3.2). Contexts end when the mailbox is deselected or the
// client sends CANCELUPDATE.
//
// The three kinds of change reach a context where the session learns of
// them: flag changes by other sessions as the tracker writes their FETCH,
// this session's own flag changes (which the tracker does not echo) at the
// next poll, arrivals right after the EXISTS that announces them, and
// expunges just before the EXPUNGE or VANISHED that reports them (section
// 4.3.4: "prior to the expunge notification itself").

// maxSearchContexts bounds a session's contexts. RFC 5267 4.3.1: "Servers
// MUST provide at least one updating context per client, and SHOULD
// provide more"; past this the client gets NOUPDATE.
const maxSearchContexts = 8

// searchContext is one search kept up to date.
type searchContext struct {
	tag      string
	uid      bool // UID SEARCH: updates name UIDs, else sequence numbers
	criteria *imap.SearchCriteria
	needs    searchNeeds
	// result is the UIDs the client was told match, as a bitmap: its size
	// follows the span of UIDs, a few KiB for a large mailbox, whatever
	// the result.
	result uidBitmap
	// known is the highest UID in the client's view when the context was
	// last brought up to date: every later arrival is new to it.
	known uint32
}

// SearchUpdating implements imapconn.SearchContexts.
func (s *session) SearchUpdating(tag string, kind imapconn.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, bool, error) {
	v := s.selected
	if len(v.contexts) >= maxSearchContexts || !updatable(criteria) {
		data, err := s.Search(kind, criteria, options)
		return data, false, err
	}
	kept := cloneCriteria(criteria) // search resolves criteria in place
	// The client's view as the search sees it: arrivals it has not been
	// told of are evaluated when their EXISTS is written.
	known := v.maxAnnouncedUID()
	data, uids, err := s.search(kind, criteria, options)
	if err != nil {
		return nil, false, err
	}
	c := &searchContext{tag: tag, uid: kind == imapconn.NumKindUID, criteria: kept, result: uidBitmap{}, known: known}
	needsOf(kept, &c.needs)
	for _, r := range uids {
		for u := uint64(r.Start); u <= uint64(r.Stop); u++ {
			c.result.add(uint32(u))
		}
	}
	v.contexts = append(v.contexts, c)
	return data, true, nil
}

// Tracking implements imapconn.SearchContexts.
func (s *session) Tracking(tag string) bool {
	return s.selected != nil && s.selected.context(tag) != nil
}

// CancelUpdate implements imapconn.SearchContexts.
func (s *session) CancelUpdate(tag string) bool {
	v := s.selected
	if v == nil {
		return false
	}
	for i, c := range v.contexts {
		if c.tag == tag {
			v.contexts = append(v.contexts[:i], v.contexts[i+1:]...)
			return true
		}
	}
	return false
}

func (v *view) context(tag string) *searchContext {
	for _, c := range v.contexts {
		if c.tag == tag {
			return c
		}
	}
	return nil
}

// updatable reports whether the result of criteria can be kept up to date
// by re-evaluating changed messages: not when a criterion means something
// else as the mailbox changes (sequence numbers, "*", "$"), or was
// resolved to a fixed set of messages when the search ran (RECENT, NEW,
// OLD, and the extension keys that go by metadata such as EMAILID).
func updatable(c *imap.SearchCriteria) bool {
	if len(c.SeqNum) > 0 {
		return false
	}
	for _, set := range c.UID {
		if imap.IsSearchRes(set) || set.Dynamic() {
			return false
		}
	}
	for _, h := range c.Header {
		if isExtKey(h) {
			return false
		}
	}
	for _, f := range append(append([]imap.Flag{}, c.Flag...), c.NotFlag...) {
		if strings.EqualFold(string(f), `\Recent`) {
			return false
		}
	}
	for i := range c.Not {
		if !updatable(&c.Not[i]) {
			return false
		}
	}
	for _, or := range c.Or {
		if !updatable(&or[0]) || !updatable(&or[1]) {
			return false
		}
	}
	return true
}

// cloneCriteria copies c deeply enough that resolving the copy leaves c as
// it was.
func cloneCriteria(c *imap.SearchCriteria) *imap.SearchCriteria {
	out := *c
	out.UID = append([]imap.UIDSet(nil), c.UID...)
	out.SeqNum = append([]imap.SeqSet(nil), c.SeqNum...)
	out.Header = append([]imap.SearchCriteriaHeaderField(nil), c.Header...)
	out.Flag = append([]imap.Flag(nil), c.Flag...)
	out.NotFlag = append([]imap.Flag(nil), c.NotFlag...)
	out.Body = append([]string(nil), c.Body...)
	out.Text = append([]string(nil), c.Text...)
	out.Not = nil
	for i := range c.Not {
		out.Not = append(out.Not, *cloneCriteria(&c.Not[i]))
	}
	out.Or = nil
	for _, or := range c.Or {
		out.Or = append(out.Or, [2]imap.SearchCriteria{*cloneCriteria(&or[0]), *cloneCriteria(&or[1])})
	}
	return &out
}

// changeFlags runs fn, a flag change of this session's (see
// mailboxState.ownFlagChange). The tracker does not echo such changes, so
// the messages are noted for the search contexts to re-evaluate at the
// next poll.
func (v *view) changeFlags(fn func() ([]*storagev1.Message, error)) error {
	return v.state.ownFlagChange(v.tracker, func() ([]*storagev1.Message, error) {
		msgs, err := fn()
		if len(v.contexts) > 0 {
			for _, m := range msgs {
				v.ownChanged = append(v.ownChanged, m.Uid)
			}
		}
		return msgs, err
	})
}

// contextSink is the UpdateSink of a poll while search contexts exist: it
// passes every update on and adds the contexts' ADDTO and REMOVEFROM.
type contextSink struct {
	*imapconn.UpdateWriter
	s *session
	v *view
	// pending: flag-driven changes not written yet, per context. They are
	// written before any expunge (whose numbering they use) and at the
	// end of the poll, one ESEARCH per context and direction.
	pending map[*searchContext]*contextChange
}

type contextChange struct{ add, remove []uint32 } // seqs or UIDs, ascending

func newContextSink(w *imapconn.UpdateWriter, s *session, v *view) *contextSink {
	return &contextSink{UpdateWriter: w, s: s, v: v, pending: map[*searchContext]*contextChange{}}
}

// recheck re-evaluates one message of the client's view for every context.
func (w *contextSink) recheck(t target) error {
	var meta *storagev1.Message
	for _, c := range w.v.contexts {
		if c.needs.meta && meta == nil {
			got, err := w.s.metadata([]uint32{t.uid}, false, false)
			if err != nil {
				return mapError(err)
			}
			if meta = got[t.uid]; meta == nil {
				return nil // expunged meanwhile: its expunge comes later
			}
		}
		match, err := w.s.matchTarget(t, meta, c.needs, c.criteria)
		if err != nil {
			return err
		}
		if match == c.result.has(t.uid) {
			continue
		}
		ch := w.pending[c]
		if ch == nil {
			ch = &contextChange{}
			w.pending[c] = ch
		}
		num := t.seq
		if c.uid {
			num = t.uid
		}
		if match {
			c.result.add(t.uid)
			ch.add = append(ch.add, num)
		} else {
			c.result.remove(t.uid)
			ch.remove = append(ch.remove, num)
		}
	}
	return nil
}

// flush writes the pending changes.
func (w *contextSink) flush() error {
	for _, c := range w.v.contexts {
		ch := w.pending[c]
		if ch == nil {
			continue
		}
		delete(w.pending, c)
		if len(ch.remove) > 0 {
			if err := w.WriteSearchUpdate(c.tag, c.uid, false, numSet(c.uid, ch.remove)); err != nil {
				return err
			}
		}
		if len(ch.add) > 0 {
			if err := w.WriteSearchUpdate(c.tag, c.uid, true, numSet(c.uid, ch.add)); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkOwnChanges re-evaluates the messages this session changed the flags
// of since the last poll.
func (w *contextSink) checkOwnChanges() error {
	uids := w.v.ownChanged
	w.v.ownChanged = nil
	for _, uid := range uids {
		t, ok := w.v.current(uid)
		if !ok {
			continue // expunged: the expunge tells the contexts
		}
		if err := w.recheck(t); err != nil {
			return err
		}
	}
	return nil
}

// WriteMessageFlags passes a flag change on, then re-evaluates the message
// by the flags the client was just told (newer ones come with a FETCH of
// their own, and are judged then). The sequence number is the one just
// written: the view's numbering may already be past this poll's expunges,
// which are written after the FETCHes.
func (w *contextSink) WriteMessageFlags(seqNum uint32, uid imap.UID, flags []imap.Flag, modSeq uint64) error {
	if err := w.UpdateWriter.WriteMessageFlags(seqNum, uid, flags, modSeq); err != nil {
		return err
	}
	if uid == 0 {
		return nil
	}
	return w.recheck(target{seq: seqNum, uid: uint32(uid), flags: storeFlags(flags), modseq: modSeq})
}

// BeforeExpunge writes REMOVEFROM for the expunged messages that were in a
// result, numbered as the client still knows them.
func (w *contextSink) BeforeExpunge(gone []imapconn.Expunged) error {
	if err := w.flush(); err != nil {
		return err
	}
	for _, c := range w.v.contexts {
		var nums []uint32
		for _, g := range gone {
			if g.UID == 0 || !c.result.has(uint32(g.UID)) {
				continue
			}
			c.result.remove(uint32(g.UID))
			if c.uid {
				nums = append(nums, uint32(g.UID))
			} else {
				nums = append(nums, g.Seq)
			}
		}
		if len(nums) > 0 {
			if err := w.WriteSearchUpdate(c.tag, c.uid, false, numSet(c.uid, nums)); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteNumMessages passes EXISTS on, then evaluates the arrivals: RFC 5267
// 4.3.3, an ADDTO for messages delivered or appended "MUST be sent after
// the EXISTS notification itself".
func (w *contextSink) WriteNumMessages(n uint32) error {
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.UpdateWriter.WriteNumMessages(n); err != nil {
		return err
	}
	for _, c := range w.v.contexts {
		for _, t := range w.v.arrivedSince(c.known) {
			if err := w.recheck(t); err != nil {
				return err
			}
			c.known = max(c.known, t.uid)
		}
	}
	return w.flush()
}

// current returns message uid as the client's view has it now.
func (v *view) current(uid uint32) (target, bool) {
	m := v.state
	m.mu.Lock()
	defer m.mu.Unlock()
	i := m.index(uid)
	if i < 0 {
		return target{}, false
	}
	seq := v.tracker.EncodeSeqNum(uint32(i + 1))
	if seq == 0 {
		return target{}, false
	}
	e := m.entries[i]
	return e.target(seq), true
}

// arrivedSince returns the messages of the client's view with a UID above
// known, in order.
func (v *view) arrivedSince(known uint32) []target {
	m := v.state
	m.mu.Lock()
	defer m.mu.Unlock()
	first := len(m.entries)
	for first > 0 && m.entries[first-1].uid > known {
		first--
	}
	var out []target
	for i := first; i < len(m.entries); i++ {
		seq := v.tracker.EncodeSeqNum(uint32(i + 1))
		if seq == 0 {
			break // not announced yet: a later EXISTS brings it
		}
		e := m.entries[i]
		out = append(out, e.target(seq))
	}
	return out
}

func numSet(uid bool, nums []uint32) imap.NumSet {
	if uid {
		var set imap.UIDSet
		for _, n := range nums {
			set.AddNum(imap.UID(n))
		}
		return set
	}
	var set imap.SeqSet
	set.AddNum(nums...)
	return set
}

// uidBitmap is a set of UIDs: one bit per UID, in chunks of 65 536 UIDs
// allocated as they are needed.
type uidBitmap map[uint32]*[1024]uint64

func (b uidBitmap) add(uid uint32) {
	chunk := b[uid>>16]
	if chunk == nil {
		chunk = new([1024]uint64)
		b[uid>>16] = chunk
	}
	chunk[uid>>6&1023] |= 1 << (uid & 63)
}

func (b uidBitmap) remove(uid uint32) {
	if chunk := b[uid>>16]; chunk != nil {
		chunk[uid>>6&1023] &^= 1 << (uid & 63)
	}
}

func (b uidBitmap) has(uid uint32) bool {
	chunk := b[uid>>16]
	return chunk != nil && chunk[uid>>6&1023]&(1<<(uid&63)) != 0
}
