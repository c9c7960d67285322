package imapd

// CONDSTORE and QRESYNC (RFC 7162): the session's side. Modseqs come from
// the shared mailbox view (each entry carries the modseq of its flags, fed
// by the Watch stream), so FETCH MODSEQ, CHANGEDSINCE and SEARCH MODSEQ
// agree with the flags the client is shown; what was expunged since a
// modseq comes from the storage tier's expunge records (ListVanished).

import (
	"slices"

	"github.com/emersion/go-imap/v2"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
)

var _ imapconn.CondStoreSession = (*session)(nil)

// modifiedSet is STORE's MODIFIED set (RFC 7162 3.1.3): the failed UIDs
// (every target when failed is nil), as UIDs for UID STORE and as the
// client's sequence numbers for STORE.
func modifiedSet(numSet imap.NumSet, targets []target, failed []uint32) imap.NumSet {
	isFailed := func(uid uint32) bool { return failed == nil || slices.Contains(failed, uid) }
	if len(failed) > 64 {
		m := map[uint32]bool{}
		for _, u := range failed {
			m[u] = true
		}
		isFailed = func(uid uint32) bool { return m[uid] }
	}
	if _, ok := numSet.(imap.UIDSet); ok {
		var set imap.UIDSet
		for _, t := range targets {
			if isFailed(t.uid) {
				set.AddNum(imap.UID(t.uid))
			}
		}
		return set
	}
	var set imap.SeqSet
	for _, t := range targets {
		if isFailed(t.uid) && t.seq != 0 {
			set.AddNum(t.seq)
		}
	}
	return set
}

// writeStored writes STORE's FETCH responses: the new flags unless
// .SILENT; once CONDSTORE is on, with MODSEQ, and even under .SILENT for
// the messages the STORE changed (RFC 7162 3.1.3, 3.2).
func writeStored(w *imapconn.FetchWriter, targets []target, after []*storagev1.Message, silent bool) error {
	byUID := make(map[uint32]*storagev1.Message, len(after))
	for _, m := range after {
		byUID[m.Uid] = m
	}
	condstore := w.CondStore()
	for _, t := range targets {
		m, ok := byUID[t.uid]
		if !ok || t.seq == 0 {
			continue // failed the UNCHANGEDSINCE test, or expunged
		}
		changed := m.Modseq > t.modseq
		if silent && (!condstore || !changed) {
			continue
		}
		rw := w.CreateMessage(t.seq)
		rw.WriteUID(imap.UID(t.uid))
		if !silent {
			rw.WriteFlags(toIMAPFlags(m.Flags))
		}
		if condstore {
			rw.WriteModSeq(m.Modseq)
		}
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// matchesModSeq is SEARCH MODSEQ (RFC 7162 3.1.5): messages whose modseq
// is at least the value.
func matchesModSeq(c *candidate, crit *imap.SearchCriteria) bool {
	return crit.ModSeq == nil || c.modseq >= crit.ModSeq.ModSeq
}

// changedKnown returns the messages of the view within known (nil: all)
// whose modseq is above since, without listing the others (a resync of a
// 100 000-message mailbox holds only what changed).
func (v *view) changedKnown(known imap.UIDSet, since uint64) []target {
	// The known ranges in order, walked along the entries (which are in
	// UID order): linear, however many ranges the client sent.
	var ranges []imap.UIDRange
	for _, r := range known {
		ranges = append(ranges, imap.UIDRange{Start: min(r.Start, r.Stop), Stop: max(r.Start, r.Stop)})
	}
	slices.SortFunc(ranges, func(a, b imap.UIDRange) int { return int(int64(a.Start) - int64(b.Start)) })
	m := v.state
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []target
	ri := 0
	for i, e := range m.entries {
		if known != nil {
			for ri < len(ranges) && uint32(ranges[ri].Stop) < e.uid {
				ri++
			}
			if ri == len(ranges) {
				break
			}
			if uint32(ranges[ri].Start) > e.uid {
				continue
			}
		}
		if e.modseq <= since {
			continue
		}
		if seq := v.tracker.EncodeSeqNum(uint32(i + 1)); seq != 0 {
			out = append(out, e.target(seq))
		}
	}
	return out
}

// changedSince keeps the targets whose modseq is above since (FETCH
// CHANGEDSINCE, RFC 7162 3.1.4.1).
func changedSince(targets []target, since uint64) []target {
	out := targets[:0]
	for _, t := range targets {
		if t.modseq > since {
			out = append(out, t)
		}
	}
	return out
}

// Vanished writes VANISHED (EARLIER) for the UIDs within uids (nil: all)
// expunged from the selected mailbox after modSeq (RFC 7162 3.2.6), page
// by page from the storage tier. UIDs the session's view still holds (an
// expunge it has not announced yet) are left to the announcement.
func (s *session) Vanished(w *imapconn.VanishedWriter, uids imap.UIDSet, modSeq uint64) error {
	v := s.selected
	if imap.IsSearchRes(uids) {
		// RFC 5182 "$": never "all" (nil), even when nothing is saved
		// (after SELECT, a SAVE that matched nothing or failed with NO).
		if len(v.searchRes) == 0 {
			return w.Flush()
		}
		uids = v.searchRes
	}
	if uids != nil && len(uids) == 0 {
		return w.Flush() // no UIDs asked about
	}
	var within *storagev1.UIDSet
	if uids != nil {
		maxUID := uint32(0)
		v.state.mu.Lock()
		if n := len(v.state.entries); n > 0 {
			maxUID = v.state.entries[n-1].uid
		}
		v.state.mu.Unlock()
		within = &storagev1.UIDSet{}
		for _, r := range staticUIDSet(uids, maxUID) {
			within.Ranges = append(within.Ranges, &storagev1.UIDRange{First: uint32(r.Start), Last: uint32(r.Stop)})
		}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	req := &storagev1.ListVanishedRequest{AccountId: s.account.Id, MailboxId: v.state.id, SinceModseq: modSeq, Uids: within}
	for {
		resp, err := s.srv.store.Messages.ListVanished(ctx, req)
		if err != nil {
			return mapError(err)
		}
		for _, r := range resp.Uids.GetRanges() {
			if err := s.addVanished(w, r.First, r.Last); err != nil {
				return err
			}
		}
		if !resp.More {
			return w.Flush()
		}
		req.PageToken, req.Revision = resp.PageToken, resp.Revision
	}
}

// addVanished adds first..last to w, less the UIDs the view still has:
// the mailbox's messages, and the ones expunged that the session has not
// been told of yet. Those are told once, by the VANISHED that removes
// them from the client's view (and count, RFC 7162 3.2.10) at its next
// poll, not also here (an expunge that lands while a SELECT (QRESYNC ...)
// or UID FETCH (VANISHED) runs would otherwise be told twice).
func (s *session) addVanished(w *imapconn.VanishedWriter, first, last uint32) error {
	m := s.selected.state
	m.mu.Lock()
	var present []uint32
	for i := searchUID(m.entries, first); i < len(m.entries) && m.entries[i].uid <= last; i++ {
		present = append(present, m.entries[i].uid)
		if len(present) > 4096 {
			break // a range this full of live UIDs is a client's guess: trimmed below
		}
	}
	// Under m.mu, which the watch holds while it removes an entry and
	// queues its expunge: a UID is in one or the other.
	upTo := last // what this call covers (see the trimming below)
	if len(present) > 4096 {
		upTo = present[len(present)-1]
	}
	present = append(present, s.selected.tracker.PendingExpungesIn(first, upTo)...)
	m.mu.Unlock()
	slices.Sort(present)
	from := first
	for _, u := range present {
		if u > from {
			if err := w.AddRange(imap.UID(from), imap.UID(u-1)); err != nil {
				return err
			}
		}
		from = u + 1
	}
	if len(present) > 4096 && from != 0 { // from 0: the last was UID 2^32-1
		// Too many live UIDs to hold at once: go on from the last one.
		return s.addVanished(w, from, last)
	}
	if from <= last && from != 0 {
		return w.AddRange(imap.UID(from), imap.UID(last))
	}
	return nil
}

// seqMatchPairs bounds how many pairs of seq-match-data are looked at.
const seqMatchPairs = 16384

// seqMatchFloor returns the highest UID of the client's seq-match-data
// (RFC 7162 3.2.5.2) that is still at the sequence number the client
// gives it: the messages below it are then exactly the ones the client
// had (UIDs below an existing one are never added), so none of them was
// expunged since. 0 if no pair matches.
func (s *session) seqMatchFloor(seqs imap.SeqSet, uids imap.UIDSet) uint32 {
	v := s.selected
	m := v.state
	var floor uint32
	ui, uNext := 0, uint32(0) // position in uids: range ui, next UID uNext
	pairs := 0
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, sr := range seqs {
		lo, hi := min(sr.Start, sr.Stop), max(sr.Start, sr.Stop)
		for seq := lo; ; seq++ {
			if ui >= len(uids) || pairs >= seqMatchPairs {
				return floor
			}
			ur := uids[ui]
			ulo, uhi := uint32(min(ur.Start, ur.Stop)), uint32(max(ur.Start, ur.Stop))
			if uNext < ulo {
				uNext = ulo
			}
			uid := uNext
			if uNext >= uhi {
				ui, uNext = ui+1, 0
			} else {
				uNext++
			}
			pairs++
			if ms := v.tracker.DecodeSeqNum(seq); ms != 0 && int(ms) <= len(m.entries) && m.entries[ms-1].uid == uid {
				floor = max(floor, uid)
			}
			if seq == hi {
				break
			}
		}
	}
	return floor
}

// above returns the UIDs of set (nil: all) above floor.
func above(set imap.UIDSet, floor uint32) imap.UIDSet {
	if set == nil {
		return imap.UIDSet{imap.UIDRange{Start: imap.UID(floor + 1), Stop: 0}}
	}
	out := imap.UIDSet{}
	for _, r := range set {
		lo, hi := min(r.Start, r.Stop), max(r.Start, r.Stop)
		if lo <= imap.UID(floor) {
			lo = imap.UID(floor + 1)
		}
		if lo <= hi {
			out = append(out, imap.UIDRange{Start: lo, Stop: hi})
		}
	}
	return out
}

// searchUID returns the index of the first entry with a UID at or above uid.
func searchUID(entries []entry, uid uint32) int {
	i, _ := slices.BinarySearchFunc(entries, uid, func(e entry, u uint32) int {
		switch {
		case e.uid < u:
			return -1
		case e.uid > u:
			return 1
		}
		return 0
	})
	return i
}

// HighestModSeq is the view's HIGHESTMODSEQ.
func (s *session) HighestModSeq() uint64 {
	if s.selected == nil {
		return 0
	}
	m := s.selected.state
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.modseq
}

// QResync answers SELECT's QRESYNC parameter (RFC 7162 3.2.5): VANISHED
// (EARLIER) for the known UIDs expunged after the client's modseq, then a
// FETCH (UID FLAGS MODSEQ) of every known message changed after it.
func (s *session) QResync(fw *imapconn.FetchWriter, vw *imapconn.VanishedWriter, p *imapconn.QResyncParams) error {
	v := s.selected
	known := p.KnownUIDs
	if p.SeqMatchSeqs != nil {
		if floor := s.seqMatchFloor(p.SeqMatchSeqs, p.SeqMatchUIDs); floor > 0 {
			known = above(known, floor)
		}
	}
	if known == nil || len(known) > 0 {
		if err := s.Vanished(vw, known, p.ModSeq); err != nil {
			return err
		}
	}
	for _, t := range v.changedKnown(p.KnownUIDs, p.ModSeq) {
		rw := fw.CreateMessage(t.seq)
		rw.WriteUID(imap.UID(t.uid))
		rw.WriteFlags(toIMAPFlags(t.flags))
		rw.WriteModSeq(t.modseq)
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}
