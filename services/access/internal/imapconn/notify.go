package imapconn

// RFC 5465 NOTIFY: the command's grammar (section 8), its answers, and the
// writers a session reports events through. Which events happen, and to
// whom, is the session's business (imapd/notify.go).

import (
	"strings"

	"github.com/emersion/go-imap/v2"
)

// CapNotify is announced after login when the sessions back it
// (Options.Caps) and implement Notifier.
const CapNotify imap.Cap = "NOTIFY"

// NotifyEvent is a set of RFC 5465 section 5 events.
type NotifyEvent uint16

const (
	NotifyMessageNew NotifyEvent = 1 << iota
	NotifyMessageExpunge
	NotifyFlagChange
	NotifyAnnotationChange
	NotifyMailboxName
	NotifySubscriptionChange
	NotifyMailboxMetadataChange
	NotifyServerMetadataChange
)

// notifyEventNames are the events of section 8, in its order.
var notifyEventNames = []struct {
	name string
	ev   NotifyEvent
}{
	{"MessageNew", NotifyMessageNew},
	{"MessageExpunge", NotifyMessageExpunge},
	{"FlagChange", NotifyFlagChange},
	{"AnnotationChange", NotifyAnnotationChange},
	{"MailboxName", NotifyMailboxName},
	{"SubscriptionChange", NotifySubscriptionChange},
	{"MailboxMetadataChange", NotifyMailboxMetadataChange},
	{"ServerMetadataChange", NotifyServerMetadataChange},
}

// NotifySupported are the events this server reports: no ANNOTATE (RFC
// 5257) and no METADATA (RFC 5464), so none of their events.
const NotifySupported = NotifyMessageNew | NotifyMessageExpunge | NotifyFlagChange | NotifyMailboxName | NotifySubscriptionChange

// notifyMessageEvents are section 8's message-event: the only events the
// selected filters take.
const notifyMessageEvents = NotifyMessageNew | NotifyMessageExpunge | NotifyFlagChange | NotifyAnnotationChange

// Names returns the names of the events in e, in section 8's order.
func (e NotifyEvent) Names() []string {
	var out []string
	for _, n := range notifyEventNames {
		if e&n.ev != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// NotifyFilter is a filter-mailboxes of section 8.
type NotifyFilter int

const (
	NotifySelected        NotifyFilter = iota + 1 // "selected" (section 6.1)
	NotifySelectedDelayed                         // "selected-delayed" (section 6.2)
	NotifyInboxes                                 // "inboxes" (section 6.3)
	NotifyPersonal                                // "personal" (section 6.4)
	NotifySubscribed                              // "subscribed" (section 6.5)
	NotifySubtree                                 // "subtree" one-or-more-mailbox (section 6.6)
	NotifyMailboxes                               // "mailboxes" one-or-more-mailbox (section 6.7)
)

// IsSelected reports whether the filter is selected or selected-delayed.
func (f NotifyFilter) IsSelected() bool { return f == NotifySelected || f == NotifySelectedDelayed }

// NotifyGroup is one event-group.
type NotifyGroup struct {
	Filter NotifyFilter
	// Mailboxes: the names of SUBTREE and MAILBOXES (UTF-8, INBOX upper case).
	Mailboxes []string
	// Events: none for "NONE".
	Events NotifyEvent
	// Fetch: MessageNew's fetch-att list (selected filters only), or nil.
	Fetch *FetchArgs
}

// NotifySpec is a NOTIFY SET.
type NotifySpec struct {
	// Status: "SET STATUS", the STATUS of every mailbox of the filters is
	// sent before the tagged OK (section 3.1).
	Status bool
	Groups []NotifyGroup
	// Unsupported names the events asked for that the server does not
	// report (among them unknown event-ext atoms): the command then fails
	// with NO [BADEVENT] (section 3.1).
	Unsupported []string
}

// Selected returns the group of the selected or selected-delayed filter,
// or nil.
func (s *NotifySpec) Selected() *NotifyGroup {
	for i := range s.Groups {
		if s.Groups[i].Filter.IsSelected() {
			return &s.Groups[i]
		}
	}
	return nil
}

// ParseNotify reads NOTIFY's arguments: SP "NONE" (nil spec) or
// SP "SET" [SP "STATUS"] 1*(SP event-group) (RFC 5465 section 8). It
// enforces the grammar and section 5's rules on which events go together;
// a violation is a syntax error (BAD).
func (d *Decoder) ParseNotify() (*NotifySpec, error) {
	if err := d.SP(); err != nil {
		return nil, err
	}
	word, err := d.Atom()
	if err != nil {
		return nil, err
	}
	switch strings.ToUpper(word) {
	case "NONE":
		return nil, nil
	case "SET":
	default:
		return nil, syntaxErr("NOTIFY takes SET or NONE")
	}
	spec := &NotifySpec{}
	if err := d.SP(); err != nil {
		return nil, err
	}
	if d.peek() != '(' {
		word, err := d.Atom()
		if err != nil {
			return nil, err
		}
		if !strings.EqualFold(word, "STATUS") {
			return nil, syntaxErr("expected STATUS or an event group")
		}
		spec.Status = true
		if err := d.SP(); err != nil {
			return nil, err
		}
	}
	selected := false
	for {
		g, err := d.notifyEventGroup(spec)
		if err != nil {
			return nil, err
		}
		if g.Filter.IsSelected() {
			// Section 8: only one of them in a NOTIFY command.
			if selected {
				return nil, syntaxErr("only one selected or selected-delayed event group")
			}
			selected = true
		}
		spec.Groups = append(spec.Groups, g)
		if d.AtEOL() {
			return spec, nil
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
	}
}

// notifyEventGroup reads "(" filter-mailboxes SP events ")".
func (d *Decoder) notifyEventGroup(spec *NotifySpec) (NotifyGroup, error) {
	var g NotifyGroup
	if err := d.expect('(', "an event group"); err != nil {
		return g, err
	}
	filter, err := d.Atom()
	if err != nil {
		return g, err
	}
	switch strings.ToUpper(filter) {
	case "SELECTED":
		g.Filter = NotifySelected
	case "SELECTED-DELAYED":
		g.Filter = NotifySelectedDelayed
	case "INBOXES":
		g.Filter = NotifyInboxes
	case "PERSONAL":
		g.Filter = NotifyPersonal
	case "SUBSCRIBED":
		g.Filter = NotifySubscribed
	case "SUBTREE", "MAILBOXES":
		g.Filter = NotifyMailboxes
		if strings.EqualFold(filter, "SUBTREE") {
			g.Filter = NotifySubtree
		}
		if err := d.SP(); err != nil {
			return g, err
		}
		// one-or-more-mailbox = mailbox / "(" mailbox *(SP mailbox) ")"
		add := func() error {
			name, err := d.Mailbox()
			g.Mailboxes = append(g.Mailboxes, name)
			return err
		}
		if d.peek() == '(' {
			err = d.ParenList(false, add)
		} else {
			err = add()
		}
		if err != nil {
			return g, err
		}
	default:
		return g, syntaxErr("unknown NOTIFY filter %s", filter)
	}
	if err := d.SP(); err != nil {
		return g, err
	}
	// events = ( "(" event *(SP event) ")" ) / "NONE"
	if d.peek() != '(' {
		word, err := d.Atom()
		if err != nil {
			return g, err
		}
		if !strings.EqualFold(word, "NONE") {
			return g, syntaxErr("expected an event list or NONE")
		}
	} else if err := d.ParenList(false, func() error { return d.notifyEvent(&g, spec) }); err != nil {
		return g, err
	}
	if err := d.expect(')', ")"); err != nil {
		return g, err
	}
	return g, checkNotifyGroup(g)
}

// notifyEvent reads one event, and MessageNew's fetch-att list.
func (d *Decoder) notifyEvent(g *NotifyGroup, spec *NotifySpec) error {
	name, err := d.Atom()
	if err != nil {
		return err
	}
	var ev NotifyEvent
	for _, n := range notifyEventNames {
		if strings.EqualFold(name, n.name) {
			ev = n.ev
		}
	}
	if ev == 0 {
		// event-ext = atom: grammatical, but not an event this server
		// knows (BADEVENT).
		spec.Unsupported = append(spec.Unsupported, name)
		return nil
	}
	if ev&NotifySupported == 0 {
		spec.Unsupported = append(spec.Unsupported, name)
	}
	g.Events |= ev
	if ev != NotifyMessageNew {
		return nil
	}
	// "MessageNew" [SP "(" fetch-att *(SP fetch-att) ")"]
	if b, _ := d.r.Peek(2); len(b) < 2 || b[0] != ' ' || b[1] != '(' {
		return nil
	}
	d.readByte()
	g.Fetch = &FetchArgs{Options: &imap.FetchOptions{}, RFC822: map[int]string{}}
	return d.ParenList(false, func() error {
		// fetch-att, not the macros ALL, FAST and FULL.
		b, _ := d.r.Peek(5)
		word := string(b)
		if i := strings.IndexAny(word, " )"); i >= 0 {
			word = word[:i]
		}
		switch strings.ToUpper(word) {
		case "ALL", "FAST", "FULL":
			return syntaxErr("a FETCH macro is not a fetch-att")
		}
		return d.fetchAtt(g.Fetch)
	})
}

// checkNotifyGroup enforces what the grammar leaves to the text: the
// combinations section 5 requires (a BAD otherwise), and that the selected
// filters take message events only (section 8, filter-mailboxes-selected).
func checkNotifyGroup(g NotifyGroup) error {
	e := g.Events
	newOrExpunge := e & (NotifyMessageNew | NotifyMessageExpunge)
	if newOrExpunge != 0 && newOrExpunge != NotifyMessageNew|NotifyMessageExpunge {
		// Sections 5.2 and 5.3: each requires the other.
		return syntaxErr("MessageNew and MessageExpunge go together")
	}
	if e&(NotifyFlagChange|NotifyAnnotationChange) != 0 && newOrExpunge == 0 {
		// Section 5.1.
		return syntaxErr("FlagChange and AnnotationChange need MessageNew and MessageExpunge")
	}
	if g.Filter.IsSelected() && e&^notifyMessageEvents != 0 {
		return syntaxErr("the selected filters take message events only")
	}
	if g.Fetch != nil {
		// Section 5.2: a fetch-att list describes new messages of the
		// selected mailbox; elsewhere only STATUS is sent.
		if !g.Filter.IsSelected() {
			return syntaxErr("MessageNew takes fetch-att only for the selected mailbox")
		}
		// A notification must not change the mailbox: no item that sets
		// \Seen (RFC 9051 6.4.5).
		o := g.Fetch.Options
		for _, s := range o.BodySection {
			if !s.Peek {
				return syntaxErr("MessageNew fetch-att must not set \\Seen (use BODY.PEEK)")
			}
		}
		for _, s := range o.BinarySection {
			if !s.Peek {
				return syntaxErr("MessageNew fetch-att must not set \\Seen (use BINARY.PEEK)")
			}
		}
	}
	return nil
}

// Notifier is a session that backs RFC 5465 NOTIFY.
type Notifier interface {
	// SetNotify replaces what the session reports (nil: NOTIFY NONE).
	// spec has no unsupported event. With spec.Status, it writes the
	// STATUS of every mailbox its filters name (section 3.1).
	SetNotify(w *UpdateWriter, spec *NotifySpec) error
	// Listen is Idle for the time between two commands while NOTIFY is
	// on (section 3.1: "the client listens for event notifications all
	// the time, even when no command is in progress"): it arranges for
	// wake to be called whenever notifications may be pending; update
	// (never two at once, from a goroutine of the connection's) writes
	// them; stop, called before the next command runs, ends it.
	Listen(w *UpdateWriter, wake func()) (update, stop func() error)
}

// notify runs NOTIFY.
func (c *Conn) notify(tag string) error {
	n, ok := c.session.(Notifier)
	if !ok || !c.srv.opts.Caps.Has(CapNotify) {
		return syntaxErr("unknown command NOTIFY")
	}
	spec, err := c.dec.ParseNotify()
	if err != nil {
		return err
	}
	if err := c.dec.CRLF(); err != nil {
		return err
	}
	if spec != nil && len(spec.Unsupported) > 0 {
		// Section 3.1: NO [BADEVENT (events the server supports)], and
		// the notifications in force stay as they were.
		e := c.enc
		names := NotifySupported.Names()
		e.StatusResponse(tag, imap.StatusResponseTypeNo, "BADEVENT", func() {
			e.SP().List(len(names), func(i int) { e.Atom(names[i]) })
		}, "Unsupported NOTIFY event: "+strings.Join(spec.Unsupported, " "))
		return e.Err()
	}
	if err := n.SetNotify(&UpdateWriter{c: c}, spec); err != nil {
		return err
	}
	c.notifying = spec != nil
	return c.ok(tag, "NOTIFY")
}

// WithoutFlags returns a writer that drops unsolicited FETCH FLAGS: the
// client did not ask for FlagChange (RFC 5465 section 5.1).
func (w *UpdateWriter) WithoutFlags() *UpdateWriter {
	c := *w
	c.noFlags = true
	return &c
}

// Flush flushes what was written when the writer is one that flushes (IDLE,
// or between commands).
func (w *UpdateWriter) Flush() error { return w.done() }

// FetchWriter returns a writer for the FETCH responses of MessageNew's
// fetch-att list (RFC 5465 section 5.2).
func (w *UpdateWriter) FetchWriter(args *FetchArgs) *FetchWriter {
	fw := &FetchWriter{c: w.c, rfc822: map[*imap.FetchItemBodySection]string{}, ext: args.Ext}
	for i, n := range args.RFC822 {
		fw.rfc822[args.Options.BodySection[i]] = n
	}
	return fw
}

// WriteNotifyStatus writes the STATUS of a mailbox that changed (RFC 5465
// sections 5.1 to 5.3). HIGHESTMODSEQ goes only to a client that enabled
// CONDSTORE (section 5.1).
func (w *UpdateWriter) WriteNotifyStatus(data *imap.StatusData) error {
	if !w.c.condstore {
		d := *data
		d.HighestModSeq = 0
		data = &d
	}
	w.c.enc.StatusData(data)
	return w.done()
}

// WriteNotifyList writes the LIST of a mailbox created, deleted (with
// \NonExistent), renamed (with OLDNAME) or (un)subscribed (RFC 5465
// sections 5.4 and 5.5).
func (w *UpdateWriter) WriteNotifyList(data *imap.ListData) error {
	w.c.enc.ListResponse(data, false)
	return w.done()
}

// WriteNotificationOverflow says the server gave up on the client's
// notifications (RFC 5465 section 5.8): it acts as after NOTIFY NONE.
func (w *UpdateWriter) WriteNotificationOverflow() error {
	w.c.enc.StatusResponse("*", imap.StatusResponseTypeOK, "NOTIFICATIONOVERFLOW", nil, "Too many notifications; NOTIFY is off")
	return w.done()
}
