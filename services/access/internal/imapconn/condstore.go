package imapconn

// CONDSTORE and QRESYNC (RFC 7162): the connection's side. The connection
// tracks whether the client enabled them (an explicit ENABLE, or any
// "CONDSTORE enabling command" of RFC 7162 section 3.1), parses the
// QRESYNC SELECT parameter and the VANISHED FETCH modifier, and writes
// VANISHED responses in bounded lines. The session answers through
// CondStoreSession.

import (
	"strings"

	"github.com/emersion/go-imap/v2"
)

// QResyncParams are the parameters of SELECT/EXAMINE (QRESYNC (...))
// (RFC 7162 section 3.2.5).
type QResyncParams struct {
	UIDValidity uint32
	ModSeq      uint64
	// KnownUIDs limits the answer to these UIDs (nil: every UID).
	KnownUIDs imap.UIDSet
	// SeqMatch: the client's sequence numbers and the UIDs they had
	// (seq-match-data; nil when absent): the session narrows VANISHED
	// (EARLIER) with it (RFC 7162 3.2.5.2).
	SeqMatchSeqs imap.SeqSet
	SeqMatchUIDs imap.UIDSet
}

// CondStoreSession is what a Session implements for QRESYNC: the VANISHED
// (EARLIER) answers, which need the storage tier's expunge records.
type CondStoreSession interface {
	// Vanished writes, through w, the UIDs of the selected mailbox within
	// uids (nil: all) expunged after modSeq (RFC 7162 3.2.6, UID FETCH
	// VANISHED).
	Vanished(w *VanishedWriter, uids imap.UIDSet, modSeq uint64) error
	// HighestModSeq is the selected mailbox's HIGHESTMODSEQ as the
	// session's view has it (every change up to it is queued for the
	// session or already told).
	HighestModSeq() uint64
	// QResync answers SELECT's QRESYNC parameter once the mailbox is
	// selected: VANISHED (EARLIER) for the known UIDs expunged since
	// p.ModSeq, then a FETCH (UID FLAGS MODSEQ) of each message changed
	// since (RFC 7162 3.2.5). The UIDVALIDITY has been checked.
	QResync(fw *FetchWriter, vw *VanishedWriter, p *QResyncParams) error
}

// CondStore reports whether the client enabled CONDSTORE (QRESYNC
// implies it): every untagged FETCH then carries MODSEQ.
func (c *Conn) CondStore() bool { return c.condstore }

// QResync reports whether the client enabled QRESYNC: expunges are then
// VANISHED responses (RFC 7162 3.2.10).
func (c *Conn) QResync() bool { return c.enabled.Has(imap.CapQResync) }

// badAfterLine is a client error found once the command's line has been
// read to its end (a syntax error would skip the next line): BAD.
func badAfterLine(text string) error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: text}
}

// condStoreCaps are announced after login.
var condStoreCaps = []imap.Cap{imap.CapCondStore, imap.CapQResync}

// enableCondStore handles ENABLE's CONDSTORE and QRESYNC (RFC 7162 3.1.8,
// 3.2.3): it reports whether cp is one of them and, if newly enabled, adds
// it to enabled.
func (c *Conn) enableCondStore(cp imap.Cap, enabled *[]imap.Cap) bool {
	if cp != imap.CapCondStore && cp != imap.CapQResync {
		return false
	}
	c.condstore = true
	if !c.enabled.Has(cp) {
		c.enabled[cp] = struct{}{}
		*enabled = append(*enabled, cp)
	}
	return true
}

// UsesModSeq reports whether the criteria have a MODSEQ key anywhere (a
// CONDSTORE enabling SEARCH, whose result carries MODSEQ).
func UsesModSeq(c *imap.SearchCriteria) bool {
	if c == nil {
		return false
	}
	if c.ModSeq != nil {
		return true
	}
	for i := range c.Not {
		if UsesModSeq(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if UsesModSeq(&c.Or[i][0]) || UsesModSeq(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// ParseSelectQResync reads SP mailbox [SP "(" select-param *(SP
// select-param) ")"] with RFC 7162's CONDSTORE and QRESYNC parameters.
func (d *Decoder) ParseSelectQResync() (string, *imap.SelectOptions, *QResyncParams, error) {
	name, err := d.ParseMailbox()
	if err != nil {
		return "", nil, nil, err
	}
	o := &imap.SelectOptions{}
	var q *QResyncParams
	if !d.accept(' ') {
		return name, o, nil, nil
	}
	err = d.ParenList(false, func() error {
		p, err := d.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(p) {
		case "CONDSTORE":
			o.CondStore = true
			return nil
		case "QRESYNC":
			if q != nil {
				return syntaxErr("QRESYNC given twice")
			}
			if err := d.SP(); err != nil {
				return err
			}
			q, err = d.qresyncParam()
			return err
		}
		return syntaxErr("unknown SELECT parameter %s", p)
	})
	return name, o, q, err
}

// qresyncParam reads "(" uidvalidity SP mod-sequence-value [SP known-uids]
// [SP seq-match-data] ")".
func (d *Decoder) qresyncParam() (*QResyncParams, error) {
	q := &QResyncParams{}
	if err := d.expect('(', "("); err != nil {
		return nil, err
	}
	var err error
	if q.UIDValidity, err = d.NZNumber(); err != nil {
		return nil, err
	}
	if err := d.SP(); err != nil {
		return nil, err
	}
	if q.ModSeq, err = d.modSeqValue(); err != nil {
		return nil, err
	}
	if d.accept(' ') {
		if d.peek() != '(' {
			if q.KnownUIDs, err = d.knownUIDs(); err != nil {
				return nil, err
			}
			if !d.accept(' ') {
				return q, d.expect(')', ")")
			}
		}
		// seq-match-data = "(" known-sequence-set SP known-uid-set ")"
		if err := d.expect('(', "("); err != nil {
			return nil, err
		}
		set, err := d.NumSet(false)
		if err != nil {
			return nil, err
		}
		seqs, ok := set.(imap.SeqSet)
		if !ok || !staticSet(set) {
			return nil, syntaxErr("seq-match-data needs plain sequence numbers")
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
		uids, err := d.knownUIDs()
		if err != nil {
			return nil, err
		}
		if err := d.expect(')', ")"); err != nil {
			return nil, err
		}
		if setSize(seqs) != setSize(uids) {
			return nil, syntaxErr("seq-match-data: as many sequence numbers as UIDs")
		}
		q.SeqMatchSeqs, q.SeqMatchUIDs = seqs, uids
	}
	return q, d.expect(')', ")")
}

// knownUIDs reads a UID set without "*" or "$" (RFC 7162 known-uids).
func (d *Decoder) knownUIDs() (imap.UIDSet, error) {
	set, err := d.NumSet(true)
	if err != nil {
		return nil, err
	}
	uids, ok := set.(imap.UIDSet)
	if !ok || !staticSet(set) {
		return nil, syntaxErr("known UIDs may not use * or $")
	}
	return uids, nil
}

// setSize counts the numbers of a static set without listing them (a set
// may name billions).
func setSize(set imap.NumSet) uint64 {
	var n uint64
	add := func(a, b uint32) {
		n += uint64(max(a, b)) - uint64(min(a, b)) + 1
	}
	switch set := set.(type) {
	case imap.SeqSet:
		for _, r := range set {
			add(r.Start, r.Stop)
		}
	case imap.UIDSet:
		for _, r := range set {
			add(uint32(r.Start), uint32(r.Stop))
		}
	}
	return n
}

// staticSet reports whether set names no "*" and is not "$".
func staticSet(set imap.NumSet) bool {
	switch set := set.(type) {
	case imap.SeqSet:
		for _, r := range set {
			if r.Start == 0 || r.Stop == 0 {
				return false
			}
		}
	case imap.UIDSet:
		if imap.IsSearchRes(set) {
			return false
		}
		for _, r := range set {
			if r.Start == 0 || r.Stop == 0 {
				return false
			}
		}
	}
	return true
}

// modSeqValue reads a mod-sequence-value: 1 to 2^63-1 (RFC 7162 formal
// syntax); 0 is a client error.
func (d *Decoder) modSeqValue() (uint64, error) {
	n, err := d.Number64()
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, syntaxErr("a mod-sequence-value is at least 1")
	}
	return uint64(n), nil
}

// vanishedLineRanges bounds one VANISHED response: a long answer goes out
// as several responses (RFC 7162 allows any number), each line a few KiB.
const vanishedLineRanges = 256

// VanishedWriter writes VANISHED responses from UID ranges given any
// number at a time: it keeps one line's ranges only, so a 100 000-UID
// answer costs a line's memory. Ranges given in ascending order coalesce;
// any order is correct (a uid-set need not be ordered).
type VanishedWriter struct {
	c       *Conn
	earlier bool
	ranges  imap.UIDSet
	lines   int
}

// NewVanishedWriter returns a writer of VANISHED (EARLIER) responses when
// earlier is set, else of VANISHED responses.
func (c *Conn) newVanishedWriter(earlier bool) *VanishedWriter {
	return &VanishedWriter{c: c, earlier: earlier}
}

// AddRange adds the UIDs first..last.
func (w *VanishedWriter) AddRange(first, last imap.UID) error {
	if n := len(w.ranges); n > 0 && first >= w.ranges[n-1].Start && first <= w.ranges[n-1].Stop+1 {
		w.ranges[n-1].Stop = max(w.ranges[n-1].Stop, last)
		return nil
	}
	if len(w.ranges) >= vanishedLineRanges {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	w.ranges = append(w.ranges, imap.UIDRange{Start: first, Stop: last})
	return nil
}

// Flush writes the pending line, if any.
func (w *VanishedWriter) Flush() error {
	if len(w.ranges) == 0 {
		return nil
	}
	w.c.enc.Vanished(w.earlier, w.ranges)
	w.ranges = w.ranges[:0]
	w.lines++
	return w.c.enc.Err()
}

// WriteVanished reports expunged messages by UID (ascending) instead of
// EXPUNGE, once the client enabled QRESYNC (RFC 7162 3.2.10).
func (w *UpdateWriter) WriteVanished(uids []uint32) error {
	vw := w.c.newVanishedWriter(false)
	for _, u := range uids {
		if err := vw.AddRange(imap.UID(u), imap.UID(u)); err != nil {
			return err
		}
	}
	if err := vw.Flush(); err != nil {
		return err
	}
	return w.done()
}

// Vanished reports whether expunges go out as VANISHED (UpdateSink users
// ask through the vanishedSink interface).
func (w *UpdateWriter) Vanished() bool { return w.c.QResync() }

// vanishedSink is an UpdateSink that may want VANISHED instead of EXPUNGE.
type vanishedSink interface {
	Vanished() bool
	WriteVanished(uids []uint32) error
	// WriteHighestModSeq writes "* OK [HIGHESTMODSEQ n]".
	WriteHighestModSeq(modSeq uint64) error
}

// WriteHighestModSeq tells the client the HIGHESTMODSEQ it may resume
// from while expunges are held back (RFC 5162 erratum 1810).
func (w *UpdateWriter) WriteHighestModSeq(modSeq uint64) error {
	e := w.c.enc
	e.StatusResponse("*", imap.StatusResponseTypeOK, "HIGHESTMODSEQ", func() { e.SP(); e.Number64(modSeq) }, "Expunges pending")
	return w.done()
}

// SetModified records the messages a STORE UNCHANGEDSINCE did not change
// (RFC 7162 3.1.3): the tagged OK then carries [MODIFIED set].
func (w *FetchWriter) SetModified(set imap.NumSet) { w.modified = set }

// Conditional reports whether the STORE has UNCHANGEDSINCE (possibly 0:
// then every message fails the test, RFC 7162 3.1.3).
func (w *FetchWriter) Conditional() bool { return w.conditional }

// CondStore reports whether untagged FETCHes carry MODSEQ.
func (w *FetchWriter) CondStore() bool { return w.c.condstore }

// storeCompleted writes the tagged OK of a STORE, with MODIFIED when some
// messages failed the UNCHANGEDSINCE test.
func (c *Conn) storeCompleted(tag string, w *FetchWriter) error {
	if w.modified == nil || numSetEmpty(w.modified) {
		return c.ok(tag, "STORE")
	}
	e := c.enc
	e.StatusResponse(tag, imap.StatusResponseTypeOK, "MODIFIED", func() { e.SP(); e.NumSet(w.modified) }, "Conditional STORE failed for some messages")
	return e.Err()
}

// qresyncSelect answers SELECT's QRESYNC parameter (the mailbox is
// selected, its untagged data written): nothing when the UIDVALIDITY
// differs (RFC 7162 3.2.5: the client's cache is void).
func (c *Conn) qresyncSelect(data *imap.SelectData, q *QResyncParams) error {
	if q == nil || q.UIDValidity != data.UIDValidity {
		return nil
	}
	cs, ok := c.session.(CondStoreSession)
	if !ok {
		return nil
	}
	vw := c.newVanishedWriter(true)
	err := cs.QResync(&FetchWriter{c: c}, vw, q)
	if err == nil {
		err = vw.Flush()
	}
	if err != nil && c.enc.Err() == nil {
		// Without its VANISHED the resync would be wrong: the SELECT
		// fails as a whole, and no mailbox is selected (RFC 9051 6.3.2).
		c.session.Unselect()
		c.state = imap.ConnStateAuthenticated
	}
	return err
}

// expungeCompleted reports the expunges and answers EXPUNGE; once
// CONDSTORE is on, the tagged OK carries [HIGHESTMODSEQ n] (RFC 7162
// 3.2.7), read before the updates are written so that it never claims a
// change the client has not been told of (RFC 5162 erratum 1810).
func (c *Conn) expungeCompleted(tag, name string) error {
	cs, ok := c.session.(CondStoreSession)
	var modSeq uint64
	if ok && c.condstore {
		modSeq = cs.HighestModSeq()
	}
	if err := c.poll(true); err != nil {
		return err
	}
	if modSeq == 0 {
		return c.ok(tag, name)
	}
	e := c.enc
	e.StatusResponse(tag, imap.StatusResponseTypeOK, "HIGHESTMODSEQ", func() { e.SP(); e.Number64(modSeq) }, name+" completed")
	return e.Err()
}

// fetchVanished answers UID FETCH's VANISHED modifier (RFC 7162 3.2.6)
// before the FETCH responses.
func (c *Conn) fetchVanished(set imap.NumSet, since uint64) error {
	cs, ok := c.session.(CondStoreSession)
	if !ok {
		return nil
	}
	uids, _ := set.(imap.UIDSet)
	vw := c.newVanishedWriter(true)
	if err := cs.Vanished(vw, uids, since); err != nil {
		return err
	}
	return vw.Flush()
}
