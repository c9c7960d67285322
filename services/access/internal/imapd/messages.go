package imapd

import (
	"cmp"
	"slices"
	"sort"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailfleet/mailfleet/pkg/storeclient"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
)

// selfWait bounds how long a command waits for its own change to come back
// through the watch stream.
const selfWait = 5 * time.Second

// target is one message a command acts on.
type target struct {
	seq    uint32 // in the client's view
	uid    uint32
	flags  []string
	modseq uint64
}

// target is the message of entry e at sequence number seq of the client's view.
func (e entry) target(seq uint32) target {
	return target{seq: seq, uid: e.uid, flags: e.flags, modseq: e.modseq}
}

// resolve turns a sequence or UID set (with "*" and SEARCHRES "$") into the
// messages it names, in mailbox order, as the client sees them. It holds
// every target at once: commands over sets of any size (FETCH, SEARCH) walk
// them a window at a time instead.
func (v *view) resolve(numSet imap.NumSet) []target {
	var out []target
	for w := v.walk(numSet); ; {
		window := w.next(windowSize)
		if len(window) == 0 {
			return out
		}
		out = append(out, window...)
	}
}

// targetWalk goes through the messages of a set in mailbox (UID) order, a
// window at a time, so that a command over a large mailbox holds one
// window's targets, not the mailbox's. Its cursor is a UID: messages
// expunged meanwhile drop out, and arrivals after the walk began (not in the
// client's view) never come in.
type targetWalk struct {
	v     *view
	seqs  imap.SeqSet // static: one of seqs and uids is set
	uids  imap.UIDSet
	after uint32 // the last UID returned
}

// walk starts a targetWalk over numSet, with "*" and "$" resolved now.
func (v *view) walk(numSet imap.NumSet) *targetWalk {
	if imap.IsSearchRes(numSet) {
		numSet = v.searchRes
	}
	w := &targetWalk{v: v}
	m := v.state
	m.mu.Lock()
	defer m.mu.Unlock()
	switch set := numSet.(type) {
	case imap.SeqSet:
		// "*" is the client's highest sequence number.
		maxSeq := uint32(0)
		for i := len(m.entries); i > 0 && maxSeq == 0; i-- {
			maxSeq = v.tracker.EncodeSeqNum(uint32(i))
		}
		w.seqs = staticSeqSet(set, maxSeq)
	case imap.UIDSet:
		maxUID := uint32(0)
		if n := len(m.entries); n > 0 {
			maxUID = m.entries[n-1].uid
		}
		// Sorted, so that next can jump from range to range: a UID
		// FETCH of the newest messages ("n:*") or of a few scattered
		// ones costs their entries, not the whole mailbox's.
		w.uids = mergedUIDSet(staticUIDSet(set, maxUID))
	}
	return w
}

// skipTo returns the index of the first entry at or after i whose UID
// may be in the walk's UID set, len(entries) if none is.
func (w *targetWalk) skipTo(entries []entry, i int) int {
	uid := entries[i].uid
	r := sort.Search(len(w.uids), func(r int) bool { return uint32(w.uids[r].Stop) >= uid })
	if r == len(w.uids) {
		return len(entries)
	}
	if start := uint32(w.uids[r].Start); start > uid {
		return i + sort.Search(len(entries)-i, func(j int) bool { return entries[i+j].uid >= start })
	}
	return i
}

// next returns up to limit more targets (none: the walk is over).
func (w *targetWalk) next(limit int) []target {
	v, m := w.v, w.v.state
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []target
	for i := sort.Search(len(m.entries), func(i int) bool { return m.entries[i].uid > w.after }); i < len(m.entries) && len(out) < limit; i++ {
		if w.uids != nil {
			if i = w.skipTo(m.entries, i); i == len(m.entries) {
				break
			}
		}
		e := m.entries[i]
		// seq 0: not in the client's view yet, nor is any after it (they
		// arrived since the command's poll announced EXISTS). A command
		// cannot report on a message the client has not been told of
		// ("* 0 FETCH"); the next poll announces it.
		seq := v.tracker.EncodeSeqNum(uint32(i + 1))
		if seq == 0 {
			break
		}
		if w.seqs != nil && !w.seqs.Contains(seq) || w.uids != nil && !w.uids.Contains(imap.UID(e.uid)) {
			continue
		}
		out = append(out, e.target(seq))
	}
	if len(out) > 0 {
		w.after = out[len(out)-1].uid
	}
	return out
}

func staticSeqSet(set imap.SeqSet, maxSeq uint32) imap.SeqSet {
	out := make(imap.SeqSet, len(set))
	for i, r := range set {
		if r.Start == 0 {
			r.Start = maxSeq
		}
		if r.Stop == 0 {
			r.Stop = maxSeq
		}
		if r.Start > r.Stop {
			r.Start, r.Stop = r.Stop, r.Start
		}
		out[i] = r
	}
	return out
}

func staticUIDSet(set imap.UIDSet, maxUID uint32) imap.UIDSet {
	out := make(imap.UIDSet, len(set))
	for i, r := range set {
		if r.Start == 0 {
			r.Start = imap.UID(maxUID)
		}
		if r.Stop == 0 {
			r.Stop = imap.UID(maxUID)
		}
		if r.Start > r.Stop {
			r.Start, r.Stop = r.Stop, r.Start
		}
		out[i] = r
	}
	return out
}

// mergedUIDSet sorts a static set's ranges and merges those that overlap
// or touch, so that both their starts and their ends ascend.
func mergedUIDSet(set imap.UIDSet) imap.UIDSet {
	slices.SortFunc(set, func(a, b imap.UIDRange) int { return cmp.Compare(a.Start, b.Start) })
	out := imap.UIDSet{} // never nil: an empty set matches nothing
	for _, r := range set {
		if n := len(out); n > 0 && uint64(r.Start) <= uint64(out[n-1].Stop)+1 {
			out[n-1].Stop = max(out[n-1].Stop, r.Stop)
			continue
		}
		out = append(out, r)
	}
	return out
}

func uidsOf(targets []target) []uint32 {
	uids := make([]uint32, len(targets))
	for i, t := range targets {
		uids[i] = t.uid
	}
	sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
	return uids
}

func readOnlyErr() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Mailbox is read-only (EXAMINE)"}
}

// storeFlags turns IMAP flags into storage flags (\Recent is not storable).
func storeFlags(flags []imap.Flag) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if f == "\\Recent" {
			continue
		}
		out = append(out, string(f))
	}
	return out
}

// RFC 9051 6.4.6 STORE.
func (s *session) Store(w *imapconn.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	v := s.selected
	if v.readOnly {
		return readOnlyErr()
	}
	targets := v.resolve(numSet)
	if len(targets) == 0 {
		return nil
	}
	op := map[imap.StoreFlagsOp]storagev1.StoreFlagsRequest_Op{
		imap.StoreFlagsSet: storagev1.StoreFlagsRequest_OP_REPLACE,
		imap.StoreFlagsAdd: storagev1.StoreFlagsRequest_OP_ADD,
		imap.StoreFlagsDel: storagev1.StoreFlagsRequest_OP_REMOVE,
	}[flags.Op]
	ctx, cancel := s.ctx()
	defer cancel()
	req := &storagev1.StoreFlagsRequest{AccountId: s.account.Id, MailboxId: v.state.id,
		Uids: storeclient.UIDSetOf(uidsOf(targets)), Op: op, Flags: storeFlags(flags.Flags)}
	if options != nil {
		req.UnchangedSince = options.UnchangedSince
	}
	if w.Conditional() && req.UnchangedSince == 0 {
		// RFC 7162 3.1.3: UNCHANGEDSINCE 0 fails for every message.
		w.SetModified(modifiedSet(numSet, targets, nil))
		return nil
	}
	var resp *storagev1.StoreFlagsResponse
	err := v.changeFlags(func() ([]*storagev1.Message, error) {
		var err error
		resp, err = s.srv.store.Messages.StoreFlags(ctx, req)
		return resp.GetMessages(), err
	})
	if err != nil {
		return mapError(err)
	}
	v.state.waitModseq(resp.HighestModseq, selfWait)
	if len(resp.FailedUids) > 0 {
		w.SetModified(modifiedSet(numSet, targets, resp.FailedUids))
	}
	return writeStored(w, targets, resp.Messages, flags.Silent)
}

// destMailbox resolves a COPY/MOVE destination.
func (s *session) destMailbox(name string) (*storagev1.Mailbox, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.srv.store.Mailboxes.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: s.account.Id, Name: name})
	if storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_MAILBOX_NOT_FOUND {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	if err != nil {
		return nil, mapError(err)
	}
	// The selected mailbox itself is a destination too (RFC 6851 section
	// 3.3, RFC 9051 6.4.7): the copies get new UIDs there.
	return resp.Mailbox, nil
}

// copyData is the COPYUID of a COPY or MOVE, or nil when nothing was copied
// (every message expunged meanwhile): RFC 4315's uid-set cannot be empty.
func copyData(validity uint32, src, dst []uint32) *imap.CopyData {
	if len(src) == 0 {
		return nil
	}
	data := &imap.CopyData{UIDValidity: validity}
	for i := range src {
		data.SourceUIDs.AddNum(imap.UID(src[i]))
		data.DestUIDs.AddNum(imap.UID(dst[i]))
	}
	return data
}

// RFC 9051 6.4.7 COPY (RFC 4315 COPYUID).
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	targets := s.selected.resolve(numSet)
	mb, err := s.destMailbox(dest)
	if err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		return nil, nil // nothing to copy: no COPYUID
	}
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.srv.store.Messages.CopyMessages(ctx, &storagev1.CopyMessagesRequest{AccountId: s.account.Id,
		MailboxId: s.selected.state.id, Uids: storeclient.UIDSetOf(uidsOf(targets)), DestMailboxId: mb.Id})
	if err != nil {
		return nil, mapError(err)
	}
	if mb.Id == s.selected.state.id {
		// The copies are announced (EXISTS) by the poll that follows.
		s.catchUp()
	}
	return copyData(resp.DestUidValidity, resp.SourceUids, resp.DestUids), nil
}

// RFC 6851 MOVE: COPYUID first, then the expunges (from the watch, via the
// poll that follows the command).
func (s *session) Move(w *imapconn.MoveWriter, numSet imap.NumSet, dest string) error {
	v := s.selected
	if v.readOnly {
		return readOnlyErr()
	}
	targets := v.resolve(numSet)
	mb, err := s.destMailbox(dest)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		return w.WriteCopyData(nil) // nothing to move: no COPYUID
	}
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.srv.store.Messages.MoveMessages(ctx, &storagev1.MoveMessagesRequest{AccountId: s.account.Id,
		MailboxId: v.state.id, Uids: storeclient.UIDSetOf(uidsOf(targets)), DestMailboxId: mb.Id})
	if err != nil {
		return mapError(err)
	}
	if err := w.WriteCopyData(copyData(resp.DestUidValidity, resp.SourceUids, resp.DestUids)); err != nil {
		return err
	}
	v.state.waitModseq(resp.HighestModseq, selfWait)
	return nil
}

// RFC 9051 6.4.3 EXPUNGE and RFC 4315 UID EXPUNGE; the EXPUNGE responses
// come from the watch, via the poll that follows the command.
func (s *session) Expunge(w *imapconn.ExpungeWriter, uids *imap.UIDSet) error {
	v := s.selected
	if v.readOnly {
		return readOnlyErr()
	}
	req := &storagev1.ExpungeMessagesRequest{AccountId: s.account.Id, MailboxId: v.state.id}
	if uids != nil {
		targets := v.resolve(*uids)
		if len(targets) == 0 {
			return nil
		}
		req.Uids = storeclient.UIDSetOf(uidsOf(targets))
	}
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.srv.store.Messages.ExpungeMessages(ctx, req)
	if err != nil {
		return mapError(err)
	}
	if len(resp.ExpungedUids) > 0 {
		v.state.waitModseq(resp.HighestModseq, selfWait)
	}
	return nil
}
