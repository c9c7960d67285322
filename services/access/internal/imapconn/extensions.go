package imapconn

import (
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Extensions of RFC 3502 (MULTIAPPEND), RFC 8474 (OBJECTID), RFC 8514
// (SAVEDATE) and RFC 8970 (PREVIEW), announced after login when the
// sessions back them (Options.Caps).
const (
	CapMultiAppend imap.Cap = "MULTIAPPEND"
	CapObjectID    imap.Cap = "OBJECTID"
	CapSaveDate    imap.Cap = "SAVEDATE"
	CapPreview     imap.Cap = "PREVIEW"
)

var extensionCaps = []imap.Cap{CapMultiAppend, CapObjectID, CapSaveDate, CapPreview, CapNotify}

// extensionCaps lists the extensions of this file the server announces.
func (c *Conn) extensionCaps() []imap.Cap {
	var out []imap.Cap
	for _, cp := range extensionCaps {
		if _, ok := c.session.(Notifier); cp == CapNotify && !ok {
			continue
		}
		if c.srv.opts.Caps.Has(cp) {
			out = append(out, cp)
		}
	}
	return out
}

// FetchExt are the FETCH items of RFC 8474, RFC 8514 and RFC 8970, which
// go-imap's FetchOptions lacks.
type FetchExt struct {
	EmailID  bool // RFC 8474 EMAILID
	ThreadID bool // RFC 8474 THREADID
	SaveDate bool // RFC 8514 SAVEDATE
	Preview  bool // RFC 8970 PREVIEW
	// PreviewLazy: PREVIEW (LAZY), the server may answer NIL when the
	// preview is not at hand.
	PreviewLazy bool
}

// Any reports whether an item of the extensions was asked for.
func (x FetchExt) Any() bool { return x.EmailID || x.ThreadID || x.SaveDate || x.Preview }

// fetchAttExt reads the FETCH items of the extensions; ok is false for a
// name that is none of them.
func (d *Decoder) fetchAttExt(a *FetchArgs, name string) (ok bool, err error) {
	switch strings.ToUpper(name) {
	case "EMAILID":
		a.Ext.EmailID = true
	case "THREADID":
		a.Ext.ThreadID = true
	case "SAVEDATE":
		a.Ext.SaveDate = true
	case "PREVIEW":
		a.Ext.Preview = true
		// RFC 8970 section 7: "PREVIEW" [SP "(" preview-mod *(SP
		// preview-mod) ")"], preview-mod = "LAZY". A fetch-att never
		// begins with "(", so " (" here is the modifiers.
		if b, _ := d.r.Peek(2); len(b) == 2 && b[0] == ' ' && b[1] == '(' {
			d.readByte()
			err := d.ParenList(false, func() error {
				mod, err := d.Atom()
				if err != nil {
					return err
				}
				if !strings.EqualFold(mod, "LAZY") {
					return syntaxErr("unknown PREVIEW modifier %s", mod)
				}
				a.Ext.PreviewLazy = true
				return nil
			})
			return true, err
		}
	default:
		return false, nil
	}
	return true, nil
}

// Ext returns the extension items the FETCH asked for.
func (w *FetchWriter) Ext() FetchExt { return w.ext }

// WriteEmailID writes "EMAILID (id)" (RFC 8474 section 5.1).
func (w *FetchResponseWriter) WriteEmailID(id string) {
	w.item("EMAILID (").Atom(id).Special(')')
}

// WriteThreadID writes "THREADID (id)", or "THREADID NIL" for a message
// that belongs to no thread (RFC 8474 section 5.2).
func (w *FetchResponseWriter) WriteThreadID(id string) {
	if id == "" {
		w.item("THREADID NIL")
		return
	}
	w.item("THREADID (").Atom(id).Special(')')
}

// WriteSaveDate writes "SAVEDATE date-time", or "SAVEDATE NIL" (RFC 8514
// section 4).
func (w *FetchResponseWriter) WriteSaveDate(t time.Time) {
	if t.IsZero() {
		w.item("SAVEDATE NIL")
		return
	}
	w.item("SAVEDATE ").DateTime(t)
}

// WritePreview writes "PREVIEW nstring" (RFC 8970 section 3): NIL when
// isNil (a lazy PREVIEW the server did not compute).
func (w *FetchResponseWriter) WritePreview(text string, isNil bool) {
	w.item("PREVIEW ").NString(text, isNil)
}

// Pseudo header names carry the SEARCH keys of the extensions inside
// go-imap's SearchCriteria (in Header, whose real names never hold a NUL):
// the session turns them into UID sets before it searches.
const (
	SearchEmailID           = "\x00EMAILID"           // RFC 8474 section 6, value: the id
	SearchThreadID          = "\x00THREADID"          // RFC 8474 section 6, value: the id
	SearchSavedBefore       = "\x00SAVEDBEFORE"       // RFC 8514 section 4.2, value: 2006-01-02
	SearchSavedOn           = "\x00SAVEDON"           // value: 2006-01-02
	SearchSavedSince        = "\x00SAVEDSINCE"        // value: 2006-01-02
	SearchSaveDateSupported = "\x00SAVEDATESUPPORTED" // no value
)

// searchKeyExt reads the SEARCH keys of the extensions; ok is false for a
// key that is none of them.
func (d *Decoder) searchKeyExt(c *imap.SearchCriteria, key string) (ok bool, err error) {
	add := func(name, value string) {
		c.Header = append(c.Header, imap.SearchCriteriaHeaderField{Key: name, Value: value})
	}
	switch k := strings.ToUpper(key); k {
	case "EMAILID", "THREADID":
		if err := d.SP(); err != nil {
			return true, err
		}
		// objectid = 1*255(ALPHA / DIGIT / "_" / "-") (RFC 8474 section 7)
		id, err := d.token(isObjectIDChar, "an object id")
		if err != nil {
			return true, err
		}
		if len(id) > 255 {
			return true, syntaxErr("object id longer than 255 characters")
		}
		add("\x00"+k, id)
	case "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE":
		if err := d.SP(); err != nil {
			return true, err
		}
		t, err := d.Date()
		if err != nil {
			return true, err
		}
		add("\x00"+k, t.Format(time.DateOnly))
	case "SAVEDATESUPPORTED":
		add(SearchSaveDateSupported, "")
	default:
		return false, nil
	}
	return true, nil
}

func isObjectIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// ObjectIDs is what a session backs for RFC 8474 OBJECTID: the MAILBOXID
// of a mailbox by name, and of the selected mailbox.
type ObjectIDs interface {
	MailboxID(name string) (string, error)
	SelectedMailboxID() string
}

// writeMailboxIDCode writes the "* OK [MAILBOXID (id)]" of SELECT and
// EXAMINE (RFC 8474 section 4.2).
func (c *Conn) writeMailboxIDCode() {
	o, ok := c.session.(ObjectIDs)
	if !ok || !c.srv.opts.Caps.Has(CapObjectID) {
		return
	}
	if id := o.SelectedMailboxID(); id != "" {
		e := c.enc
		e.StatusResponse("*", imap.StatusResponseTypeOK, "MAILBOXID", func() { e.SP(); e.Special('(').Atom(id).Special(')') }, "Ok")
	}
}

// createdMailboxID is the MAILBOXID code of CREATE's OK (RFC 8474 section
// 4.1), or "" when unknown.
func (c *Conn) createdMailboxID(name string) string {
	o, ok := c.session.(ObjectIDs)
	if !ok || !c.srv.opts.Caps.Has(CapObjectID) {
		return ""
	}
	id, err := o.MailboxID(name)
	if err != nil {
		return ""
	}
	return id
}

// statusMailboxID writes STATUS's MAILBOXID item (RFC 8474 section 4.3)
// into an open status-att list.
func (c *Conn) statusMailboxID(name string) (string, error) {
	o, ok := c.session.(ObjectIDs)
	if !ok {
		return "", syntaxErr("MAILBOXID is not supported")
	}
	return o.MailboxID(name)
}

// StatusItem is a STATUS item of an extension: its name and value.
type StatusItem struct {
	Name  string
	Value func(e *Encoder)
}

// create runs CREATE; its OK carries the new mailbox's MAILBOXID (RFC
// 8474 section 4.1).
func (c *Conn) create(tag, mbox string, opts *imap.CreateOptions, perr error) error {
	if perr != nil {
		return perr
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if err := c.session.Create(mbox, opts); err != nil {
		return err
	}
	if err := c.poll(c.state == imap.ConnStateSelected); err != nil {
		return err
	}
	if id := c.createdMailboxID(mbox); id != "" {
		e := c.enc
		e.StatusResponse(tag, imap.StatusResponseTypeOK, "MAILBOXID", func() { e.SP(); e.Special('(').Atom(id).Special(')') }, "CREATE completed")
		return e.Err()
	}
	return c.ok(tag, "CREATE")
}

// LSub reports whether the writer answers LSUB (not LIST).
func (w *ListWriter) LSub() bool { return w.lsub }

// SetMailboxID gives the MAILBOXID of the mailbox the next WriteList
// writes, for a LIST-STATUS that asks for it (RFC 8474 section 4.3 with
// RFC 5819).
func (w *ListWriter) SetMailboxID(id string) { w.mailboxID = id }

// statusExtra is the MAILBOXID item of a LIST-STATUS STATUS response.
func (w *ListWriter) statusExtra() []StatusItem {
	id := w.mailboxID
	w.mailboxID = ""
	if !w.c.dec.StatusMailboxID || id == "" {
		return nil
	}
	return []StatusItem{{Name: "MAILBOXID", Value: func(e *Encoder) { e.Special('(').Atom(id).Special(')') }}}
}

// SessionFlagger is a session with flags of its own on messages (the
// IMAP4rev1 \Recent, RFC 3501 2.3.2), added to every FETCH response that
// names a message's UID: FETCH, STORE, unsolicited updates.
type SessionFlagger interface {
	SessionFlags(uid imap.UID, flags []imap.Flag) []imap.Flag
}

func (c *Conn) sessionFlags(uid imap.UID, flags []imap.Flag) []imap.Flag {
	if sf, ok := c.session.(SessionFlagger); ok {
		return sf.SessionFlags(uid, flags)
	}
	return flags
}
