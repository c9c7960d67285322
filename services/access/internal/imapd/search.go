package imapd

import (
	"bytes"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// What a SEARCH must load beyond the in-memory flags.
type searchNeeds struct {
	meta, header, body bool
}

func needsOf(c *imap.SearchCriteria, n *searchNeeds) {
	if !c.Since.IsZero() || !c.Before.IsZero() || c.Larger != 0 || c.Smaller != 0 {
		n.meta = true
	}
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		n.meta, n.header = true, true
	}
	if len(c.Body) > 0 || len(c.Text) > 0 {
		n.meta, n.body = true, true
	}
	for i := range c.Not {
		needsOf(&c.Not[i], n)
	}
	for i := range c.Or {
		needsOf(&c.Or[i][0], n)
		needsOf(&c.Or[i][1], n)
	}
}

// candidate is one message being matched.
type candidate struct {
	target
	meta   *storagev1.Message
	raw    []byte // header, or the whole message when the search needs bodies
	parsed *gomessage.Entity
}

// RFC 9051 6.4.4 SEARCH, with ESEARCH results (min, max, count, all) and
// RFC 5182 SEARCHRES. Messages are matched a window at a time; only the
// matches are kept.
func (s *session) Search(kind imapconn.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	data, _, err := s.search(kind, criteria, options)
	return data, err
}

// search is Search that also returns the matches' UIDs.
func (s *session) search(kind imapconn.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, imap.UIDSet, error) {
	v := s.selected
	all := v.walk(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}})
	s.claimArrivals()
	s.recentCriteria(criteria) // before the UID sets are made static
	if err := s.extCriteria(criteria); err != nil {
		return nil, nil, err
	}
	// Static versions of "$" and "*" in the criteria.
	s.staticCriteria(criteria)
	var needs searchNeeds
	needsOf(criteria, &needs)
	withModSeq := imapconn.UsesModSeq(criteria)
	data := &imap.SearchData{}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	for {
		targets := all.next(windowSize)
		if len(targets) == 0 {
			break
		}
		var meta map[uint32]*storagev1.Message
		if needs.meta {
			var err error
			if meta, err = s.metadata(uidsOf(targets), false, false); err != nil {
				return nil, nil, mapError(err)
			}
		}
		for _, t := range targets {
			match, err := s.matchTarget(t, meta[t.uid], needs, criteria)
			if err != nil {
				return nil, nil, err
			}
			if !match {
				continue
			}
			uids.AddNum(imap.UID(t.uid))
			num := t.uid
			if kind == imapconn.NumKindSeq {
				num = t.seq
				seqs.AddNum(t.seq)
			}
			if data.Min == 0 || num < data.Min {
				data.Min = num
			}
			data.Max = max(data.Max, num)
			data.Count++
			if withModSeq {
				data.ModSeq = max(data.ModSeq, t.modseq) // RFC 7162 3.1.5
			}
		}
	}
	if kind == imapconn.NumKindSeq {
		data.All = seqs
	} else {
		data.All = uids
	}
	if options != nil && options.ReturnSave {
		var first, last uint32
		if len(uids) > 0 {
			first, last = uint32(uids[0].Start), uint32(uids[len(uids)-1].Stop)
		}
		v.searchRes = savedResult(options, uids, first, last)
	}
	return data, uids, nil
}

// savedResult is what RETURN (SAVE) keeps for "$" of the matches all,
// whose first and last in the result's order are first and last (mailbox
// order for SEARCH, sort order for SORT, RFC 5267 section 3). RFC 5182
// (kept by RFC 9051 section 6.4.4): SAVE with MIN and/or MAX and no other
// result option saves only the messages MIN and MAX name; with ALL or
// COUNT, or alone, every match.
func savedResult(o *imap.SearchOptions, all imap.UIDSet, first, last uint32) imap.UIDSet {
	if len(all) == 0 || o.ReturnAll || o.ReturnCount || (!o.ReturnMin && !o.ReturnMax) {
		return all
	}
	var set imap.UIDSet
	if o.ReturnMin {
		set.AddNum(imap.UID(first))
	}
	if o.ReturnMax {
		set.AddNum(imap.UID(last))
	}
	return set
}

// matchTarget reports whether message t matches criteria. meta is its
// metadata when needs.meta (nil: it was expunged meanwhile, which does not
// match); the header or whole message is read when the criteria need it.
func (s *session) matchTarget(t target, meta *storagev1.Message, needs searchNeeds, criteria *imap.SearchCriteria) (bool, error) {
	c := &candidate{target: t, meta: meta}
	if needs.meta && c.meta == nil {
		return false, nil // expunged meanwhile
	}
	if needs.header || needs.body {
		length := c.meta.HeaderSize
		var share int64 // of the pod's search memory, while c is in memory
		if needs.body {
			length = 0
			// The raw message, a decoded part and its lower-case copy.
			var err error
			if share, err = s.acquireSearchMemory(3 * int64(c.meta.Size)); err != nil {
				return false, err
			}
		}
		defer s.srv.searchMemory.release(share)
		raw, err := s.readBody(t.uid, 0, length)
		if gone(err) {
			return false, nil
		}
		if err != nil {
			return false, mapError(err)
		}
		c.raw = raw
	}
	return matches(c, criteria), nil
}

// acquireSearchMemory waits for n bytes of the pod's search memory, as long
// as a command may take.
func (s *session) acquireSearchMemory(n int64) (int64, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	got, err := s.srv.searchMemory.acquire(ctx, n)
	if err != nil {
		return 0, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
			Text: "The server is busy searching; try again"}
	}
	return got, nil
}

// staticCriteria resolves sequence and UID sets (with "*" and "$") into
// plain UID sets, so that matching needs only UIDs.
func (s *session) staticCriteria(c *imap.SearchCriteria) {
	for _, set := range c.SeqNum {
		var u imap.UIDSet
		for _, t := range s.selected.resolve(set) {
			u.AddNum(imap.UID(t.uid))
		}
		c.UID = append(c.UID, u) // empty: matches nothing
	}
	c.SeqNum = nil
	for i, set := range c.UID {
		var u imap.UIDSet
		for _, t := range s.selected.resolve(set) {
			u.AddNum(imap.UID(t.uid))
		}
		c.UID[i] = u
	}
	for i := range c.Not {
		s.staticCriteria(&c.Not[i])
	}
	for i := range c.Or {
		s.staticCriteria(&c.Or[i][0])
		s.staticCriteria(&c.Or[i][1])
	}
}

func matches(c *candidate, crit *imap.SearchCriteria) bool {
	for _, set := range crit.UID {
		if !set.Contains(imap.UID(c.uid)) {
			return false
		}
	}
	for _, f := range crit.Flag {
		if !hasFlag(c.flags, string(f)) {
			return false
		}
	}
	for _, f := range crit.NotFlag {
		if hasFlag(c.flags, string(f)) {
			return false
		}
	}
	if !matchesModSeq(c, crit) {
		return false
	}
	if c.meta != nil {
		if !inDateRange(c.meta.InternalDate.AsTime(), crit.Since, crit.Before) {
			return false
		}
		if crit.Larger != 0 && int64(c.meta.Size) <= crit.Larger {
			return false
		}
		if crit.Smaller != 0 && int64(c.meta.Size) >= crit.Smaller {
			return false
		}
	}
	if len(crit.Header) > 0 || !crit.SentSince.IsZero() || !crit.SentBefore.IsZero() || len(crit.Body) > 0 || len(crit.Text) > 0 {
		e := c.entity()
		h := mail.Header{Header: e.Header}
		for _, hc := range crit.Header {
			if !headerContains(h.FieldsByKey(hc.Key), hc.Value) {
				return false
			}
		}
		if !crit.SentSince.IsZero() || !crit.SentBefore.IsZero() {
			sent, err := h.Date()
			if err != nil || !inDateRange(sent, crit.SentSince, crit.SentBefore) {
				return false
			}
		}
		for _, text := range crit.Body {
			if !entityContains(c.fresh(), text, false) {
				return false
			}
		}
		for _, text := range crit.Text {
			if !entityContains(c.fresh(), text, true) {
				return false
			}
		}
	}
	for i := range crit.Not {
		if matches(c, &crit.Not[i]) {
			return false
		}
	}
	for _, or := range crit.Or {
		if !matches(c, &or[0]) && !matches(c, &or[1]) {
			return false
		}
	}
	return true
}

// entity parses the loaded bytes (leniently: broken MIME still searches).
func (c *candidate) entity() *gomessage.Entity {
	if c.parsed == nil {
		c.parsed = c.fresh()
	}
	return c.parsed
}

// fresh parses the loaded bytes anew (an entity's body can be read once).
func (c *candidate) fresh() *gomessage.Entity {
	e, _ := gomessage.Read(bytes.NewReader(c.raw))
	if e == nil {
		e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(c.raw))
	}
	return e
}

// inDateRange compares dates only, as RFC 9051 6.4.4 asks (time and zone ignored).
func inDateRange(t, since, before time.Time) bool {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(since) {
		return false
	}
	if !before.IsZero() && !d.Before(before) {
		return false
	}
	return true
}

func headerContains(fields gomessage.HeaderFields, value string) bool {
	if value == "" {
		return fields.Len() > 0
	}
	value = strings.ToLower(value)
	for fields.Next() {
		text, err := fields.Text()
		if err != nil {
			text = fields.Value()
		}
		if strings.Contains(strings.ToLower(text), value) {
			return true
		}
	}
	return false
}

// entityContains searches the text parts (and with headers, every header).
func entityContains(e *gomessage.Entity, value string, withHeaders bool) bool {
	if withHeaders && headerContains(e.Header.Fields(), value) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if entityContains(part, value, withHeaders) {
				return true
			}
		}
	}
	ct, _, _ := e.Header.ContentType()
	if ct != "" && !strings.HasPrefix(ct, "text/") && !strings.HasPrefix(ct, "message/") {
		return false
	}
	body, _ := io.ReadAll(io.LimitReader(e.Body, 64<<20))
	return bytes.Contains(bytes.ToLower(body), bytes.ToLower([]byte(value)))
}
