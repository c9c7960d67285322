package imapconn

import (
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// CONTEXT=SEARCH (RFC 5267 section 4): SEARCH results the server keeps up
// to date (UPDATE, with ADDTO and REMOVEFROM in later ESEARCH responses),
// a window of the results (PARTIAL), the CONTEXT hint, and CANCELUPDATE.
// CONTEXT=SORT is not offered: SORT contexts would have to keep every
// result's position in the sort order up to date.

var capContextSearch = imap.Cap("CONTEXT=SEARCH")

// SearchContextOptions are the return options RFC 5267 section 4 adds to
// SEARCH.
type SearchContextOptions struct {
	// Update asks for ADDTO and REMOVEFROM notifications as the result
	// changes (section 4.3).
	Update bool
	// Context is a hint that the criteria will be used again (section
	// 4.2); servers "MAY ignore this return option", and this one does.
	Context bool
	// Partial, if not nil, asks for the results at these 1-based
	// positions of the result list (section 4.4).
	Partial *PartialRange
}

// PartialRange is a partial-range: positions First to Last of a result
// list, 1-based, First <= Last.
type PartialRange struct{ First, Last uint32 }

// SearchContexts is implemented by sessions that keep search results up to
// date for the client (RFC 5267 UPDATE).
type SearchContexts interface {
	// SearchUpdating is Search that then keeps the result up to date
	// under the search command's tag: from the next poll on, the session
	// writes ADDTO and REMOVEFROM through UpdateWriter.WriteSearchUpdate
	// whenever a message enters or leaves the result. tracked is false
	// when it will not (a criterion whose meaning moves, such as a
	// sequence number, or too many contexts): the connection then sends
	// NOUPDATE (section 4.3.1) and the search is answered all the same.
	SearchUpdating(tag string, kind NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (data *imap.SearchData, tracked bool, err error)
	// CancelUpdate ends the context of tag; false if there is none.
	CancelUpdate(tag string) bool
	// Tracking reports whether a context with tag exists.
	Tracking(tag string) bool
}

// searchReturnOptions reads SEARCH's RETURN list (RFC 4731 and RFC 5267):
// "(" [search-return-opt *(SP search-return-opt)] ")".
func (d *Decoder) searchReturnOptions(o *imap.SearchOptions, ctx *SearchContextOptions) error {
	flags := map[string]*bool{"MIN": &o.ReturnMin, "MAX": &o.ReturnMax, "ALL": &o.ReturnAll,
		"COUNT": &o.ReturnCount, "SAVE": &o.ReturnSave, "UPDATE": &ctx.Update, "CONTEXT": &ctx.Context}
	err := d.ParenList(true, func() error {
		name, err := d.Atom()
		if err != nil {
			return err
		}
		switch name = strings.ToUpper(name); name {
		case "PARTIAL":
			if ctx.Partial != nil {
				return syntaxErr("more than one PARTIAL")
			}
			ctx.Partial, err = d.partialRange()
			return err
		}
		p, ok := flags[name]
		if !ok {
			return syntaxErr("unknown SEARCH return option %s", name)
		}
		*p = true
		return nil
	})
	if err != nil {
		return err
	}
	if o.ReturnAll && ctx.Partial != nil {
		// RFC 5267 4.4: "A single command MUST NOT contain more than one
		// PARTIAL or ALL search return option".
		return syntaxErr("PARTIAL and ALL together")
	}
	return nil
}

// partialRange reads SP nz-number ":" nz-number (RFC 5267 section 5; "*"
// is not allowed, and 500:400 is the same as 400:500).
func (d *Decoder) partialRange() (*PartialRange, error) {
	if err := d.SP(); err != nil {
		return nil, err
	}
	a, err := d.Number()
	if err != nil {
		return nil, err
	}
	if err := d.expect(':', ":"); err != nil {
		return nil, err
	}
	b, err := d.Number()
	if err != nil {
		return nil, err
	}
	if a == 0 || b == 0 {
		return nil, syntaxErr("PARTIAL positions start at 1")
	}
	return &PartialRange{First: min(a, b), Last: max(a, b)}, nil
}

// ParseCancelUpdate reads 1*(SP quoted) (RFC 5267 section 5).
func (d *Decoder) ParseCancelUpdate() ([]string, error) {
	var tags []string
	for {
		if err := d.SP(); err != nil {
			return nil, err
		}
		if d.peek() != '"' {
			return nil, syntaxErr("expected a quoted tag")
		}
		tag, err := d.quoted()
		if err != nil {
			return nil, err
		}
		tags = append(tags, tag)
		if d.peek() != ' ' {
			return tags, nil
		}
	}
}

// cancelUpdate runs CANCELUPDATE (RFC 5267 section 4.3.5).
func (c *Conn) cancelUpdate(tag string) error {
	tags, err := c.dec.ParseCancelUpdate()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	sc, ok := c.session.(SearchContexts)
	if !ok {
		return badAfterLine("Unknown command CANCELUPDATE")
	}
	for _, t := range tags {
		if !sc.Tracking(t) {
			// Nothing was cancelled yet: a wrong tag cancels nothing.
			return badAfterLine("No search context has the tag " + strconv.Quote(t))
		}
	}
	for _, t := range tags {
		sc.CancelUpdate(t)
	}
	if err := c.poll(false); err != nil {
		return err
	}
	return c.ok(tag, "CANCELUPDATE")
}

// partialOf returns the results of set (in mailbox order) at the positions
// of r, and whether there are any: RFC 5267 4.4 "the server returns the
// results that are in the set".
func partialOf(set imap.NumSet, r PartialRange) (imap.NumSet, bool) {
	type span struct{ start, stop uint32 }
	var spans []span
	switch s := set.(type) {
	case imap.SeqSet:
		for _, x := range s {
			spans = append(spans, span{x.Start, x.Stop})
		}
	case imap.UIDSet:
		for _, x := range s {
			spans = append(spans, span{uint32(x.Start), uint32(x.Stop)})
		}
	}
	var out []span
	pos := uint64(0) // results before the current span
	for _, x := range spans {
		n := uint64(x.stop) - uint64(x.start) + 1
		first, last := max(uint64(r.First), pos+1), min(uint64(r.Last), pos+n)
		if first <= last {
			out = append(out, span{x.start + uint32(first-pos-1), x.start + uint32(last-pos-1)})
		}
		pos += n
		if pos >= uint64(r.Last) {
			break
		}
	}
	if len(out) == 0 {
		return nil, false
	}
	switch set.(type) {
	case imap.SeqSet:
		var s imap.SeqSet
		for _, x := range out {
			s.AddRange(x.start, x.stop)
		}
		return s, true
	default:
		var s imap.UIDSet
		for _, x := range out {
			s.AddRange(imap.UID(x.start), imap.UID(x.stop))
		}
		return s, true
	}
}

// WriteSearchUpdate writes an RFC 5267 update of the search context of
// tag: "* ESEARCH (TAG tag) [UID] ADDTO (0 set)" when add, else
// REMOVEFROM. SEARCH contexts are in mailbox order, so the position is 0
// (section 4.3.3: "the context position MAY be zero").
func (w *UpdateWriter) WriteSearchUpdate(tag string, uid, add bool, set imap.NumSet) error {
	e := w.c.enc
	e.Atom("* ESEARCH (TAG ").String(tag).Special(')')
	if uid {
		e.Atom(" UID")
	}
	if add {
		e.Atom(" ADDTO (0 ")
	} else {
		e.Atom(" REMOVEFROM (0 ")
	}
	e.NumSet(set).Special(')').CRLF()
	return w.done()
}
