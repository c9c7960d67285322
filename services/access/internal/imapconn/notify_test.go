package imapconn

import (
	"reflect"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// parseNotify parses NOTIFY's arguments (with the leading SP) and the CRLF.
func parseNotify(in string) (*NotifySpec, error) {
	d, _ := decoderOf(in + "\r\n")
	spec, err := d.ParseNotify()
	if err == nil {
		err = d.CRLF()
	}
	return spec, err
}

// RFC 5465 section 8: notify = "NOTIFY" SP (notify-set / notify-none),
// notify-set = "SET" [status-indicator] SP event-groups.
func TestParseNotify(t *testing.T) {
	newExp := NotifyMessageNew | NotifyMessageExpunge
	for _, tc := range []struct {
		in   string
		want *NotifySpec
	}{
		{" NONE", nil},
		{" none", nil},
		{" SET (SELECTED (MessageNew MessageExpunge))", &NotifySpec{Groups: []NotifyGroup{{Filter: NotifySelected, Events: newExp}}}},
		// Names are case-insensitive (RFC 5234 section 2.3).
		{" set status (selected-delayed (messagenew messageexpunge flagchange))", &NotifySpec{Status: true, Groups: []NotifyGroup{
			{Filter: NotifySelectedDelayed, Events: newExp | NotifyFlagChange}}}},
		{" SET (SELECTED NONE) (PERSONAL (MailboxName SubscriptionChange))", &NotifySpec{Groups: []NotifyGroup{
			{Filter: NotifySelected}, {Filter: NotifyPersonal, Events: NotifyMailboxName | NotifySubscriptionChange}}}},
		{" SET (INBOXES (MessageNew MessageExpunge)) (SUBSCRIBED NONE)", &NotifySpec{Groups: []NotifyGroup{
			{Filter: NotifyInboxes, Events: newExp}, {Filter: NotifySubscribed}}}},
		// one-or-more-mailbox = mailbox / many-mailboxes
		{" SET (SUBTREE Lists (MessageNew MessageExpunge))", &NotifySpec{Groups: []NotifyGroup{
			{Filter: NotifySubtree, Mailboxes: []string{"Lists"}, Events: newExp}}}},
		{` SET (MAILBOXES (inbox "Foo Bar" {3+}` + "\r\nBaz) NONE)", &NotifySpec{Groups: []NotifyGroup{
			{Filter: NotifyMailboxes, Mailboxes: []string{"INBOX", "Foo Bar", "Baz"}}}}},
		// Modified UTF-7 names are decoded (RFC 3501 5.1.3).
		{" SET (MAILBOXES &AMk-t&AOk- (MailboxName))", &NotifySpec{Groups: []NotifyGroup{
			{Filter: NotifyMailboxes, Mailboxes: []string{"Été"}, Events: NotifyMailboxName}}}},
		// Unsupported and unknown events parse; the command answers BADEVENT.
		{" SET (PERSONAL (MessageNew MessageExpunge AnnotationChange MailboxMetadataChange XFoo))", &NotifySpec{Groups: []NotifyGroup{
			{Filter: NotifyPersonal, Events: newExp | NotifyAnnotationChange | NotifyMailboxMetadataChange}},
			Unsupported: []string{"AnnotationChange", "MailboxMetadataChange", "XFoo"}}},
		{" SET (PERSONAL (ServerMetadataChange))", &NotifySpec{Groups: []NotifyGroup{
			{Filter: NotifyPersonal, Events: NotifyServerMetadataChange}}, Unsupported: []string{"ServerMetadataChange"}}},
	} {
		got, err := parseNotify(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
}

// RFC 5465 section 5.2: "MessageNew" [SP "(" fetch-att *(SP fetch-att) ")"],
// for the selected mailbox.
func TestParseNotifyFetchAtt(t *testing.T) {
	spec, err := parseNotify(" SET (selected (MessageNew (uid body.peek[header.fields (from to subject)]) MessageExpunge))")
	if err != nil {
		t.Fatal(err)
	}
	g := spec.Selected()
	if g == nil || g.Fetch == nil || g.Events != NotifyMessageNew|NotifyMessageExpunge {
		t.Fatalf("got %+v", spec)
	}
	o := g.Fetch.Options
	want := []*imap.FetchItemBodySection{{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"from", "to", "subject"}}}
	if !o.UID || !reflect.DeepEqual(o.BodySection, want) {
		t.Fatalf("fetch-att: %+v", o)
	}
	spec, err = parseNotify(" SET (SELECTED (MessageExpunge MessageNew (FLAGS ENVELOPE RFC822.SIZE) FlagChange))")
	if err != nil {
		t.Fatal(err)
	}
	if o := spec.Selected().Fetch.Options; !o.Flags || !o.Envelope || !o.RFC822Size || spec.Selected().Events&NotifyFlagChange == 0 {
		t.Fatalf("fetch-att: %+v", o)
	}
}

// Malformed commands and the combinations sections 5 and 8 forbid are BAD.
func TestParseNotifyErrors(t *testing.T) {
	for _, in := range []string{
		"",
		" ",
		" SET",
		" SET STATUS",
		" SET ()",
		" SET STATUS STATUS (PERSONAL NONE)",
		" SET (PERSONAL (MessageNew MessageExpunge)) STATUS",
		" SET (STATUS) (PERSONAL NONE)", // status-indicator is no list
		" NONE (PERSONAL NONE)",
		" ALL",
		" SET (PERSONAL)",
		" SET (PERSONAL ())", // events need one event
		" SET (PERSONAL MessageNew)",
		" SET (BOGUS (MessageNew MessageExpunge))",
		" SET (SUBTREE (MessageNew MessageExpunge))",      // no mailbox
		" SET (MAILBOXES () (MessageNew MessageExpunge))", // empty many-mailboxes
		" SET ((INBOX) (MessageNew MessageExpunge))",      // MAILBOXES keyword missing
		" SET (\"PERSONAL\" (MailboxName))",               // filter is no string
		" SET (PERSONAL (\"MessageNew\" MessageExpunge))", // event is an atom
		" SET (PERSONAL (MessageNew MessageExpunge)",
		" SET (PERSONAL (MessageNew MessageExpunge))  (INBOXES NONE)",
		" SET (PERSONAL (MessageNew MessageExpunge)) ",
		// Section 5.2, 5.3: MessageNew and MessageExpunge go together.
		" SET (PERSONAL (MessageNew))",
		" SET (SELECTED (MessageExpunge))",
		// Section 5.1: FlagChange and AnnotationChange need both.
		" SET (PERSONAL (FlagChange))",
		" SET (INBOXES (MessageNew FlagChange))",
		" SET (PERSONAL (AnnotationChange))",
		// Section 8: one selected filter; message events only there.
		" SET (SELECTED NONE) (SELECTED-DELAYED (MessageNew MessageExpunge))",
		" SET (SELECTED (MessageNew MessageExpunge)) (SELECTED NONE)",
		" SET (SELECTED (MailboxName))",
		" SET (SELECTED-DELAYED (MessageNew MessageExpunge SubscriptionChange))",
		// fetch-att: selected mailbox only, a fetch-att list, no \Seen.
		" SET (PERSONAL (MessageNew (UID) MessageExpunge))",
		" SET (SELECTED (MessageNew () MessageExpunge))",
		" SET (SELECTED (MessageNew (ALL) MessageExpunge))",
		" SET (SELECTED (MessageNew (UID FAST) MessageExpunge))",
		" SET (SELECTED (MessageNew (BOGUS) MessageExpunge))",
		" SET (SELECTED (MessageNew (BODY[]) MessageExpunge))",
		" SET (SELECTED (MessageNew (RFC822) MessageExpunge))",
		" SET (SELECTED (MessageNew (BINARY[1]) MessageExpunge))",
		" SET (SELECTED (MessageNew (UID) (FLAGS) MessageExpunge))",
	} {
		if spec, err := parseNotify(in); err == nil {
			t.Errorf("%q parsed: %+v", in, spec)
		} else if !IsClientError(err) {
			t.Errorf("%q: %v is not a client error", in, err)
		}
	}
}

func TestNotifyEventNames(t *testing.T) {
	got := NotifySupported.Names()
	want := []string{"MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange"}
	if !slices.Equal(got, want) {
		t.Fatalf("supported events %q, want %q", got, want)
	}
}
