package imapconn

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func decoderOf(s string) (*Decoder, *int) {
	d := NewDecoder(bufio.NewReader(strings.NewReader(s)))
	conts := 0
	d.Continue = func() error { conts++; return nil }
	return d, &conts
}

// RFC 9051 section 9: fetch-att, section, partial.
func TestParseFetch(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want imap.FetchOptions
	}{
		{" 1:* (FLAGS UID)", imap.FetchOptions{Flags: true, UID: true}},
		{" 1 FAST", imap.FetchOptions{Flags: true, InternalDate: true, RFC822Size: true}},
		{" 1 ALL", imap.FetchOptions{Flags: true, InternalDate: true, RFC822Size: true, Envelope: true}},
		{" 2 BODYSTRUCTURE", imap.FetchOptions{BodyStructure: &imap.FetchItemBodyStructure{Extended: true}}},
		{" 2 BODY", imap.FetchOptions{BodyStructure: &imap.FetchItemBodyStructure{}}},
		{" 2 BODY.PEEK[]", imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}},
		{" 2 body[1.2.MIME]", imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Part: []int{1, 2}, Specifier: imap.PartSpecifierMIME}}}},
		{" 2 BODY[HEADER.FIELDS (From \"To\")]<0.100>", imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{
			Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"From", "To"}, Partial: &imap.SectionPartial{Offset: 0, Size: 100}}}}},
		{" 2 BODY[3.HEADER.FIELDS.NOT (X-A)]", imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{
			Part: []int{3}, Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"X-A"}}}}},
		{" 2 (BINARY.PEEK[1]<5.7> BINARY.SIZE[2])", imap.FetchOptions{
			BinarySection:     []*imap.FetchItemBinarySection{{Part: []int{1}, Peek: true, Partial: &imap.SectionPartial{Offset: 5, Size: 7}}},
			BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{2}}}}},
		{" 1 (FLAGS) (CHANGEDSINCE 12345)", imap.FetchOptions{Flags: true, ModSeq: true, ChangedSince: 12345}},
	} {
		d, _ := decoderOf(tc.in + "\r\n")
		a, err := d.ParseFetch(false)
		if err == nil {
			err = d.CRLF()
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(*a.Options, tc.want) {
			t.Errorf("%q: got %+v, want %+v", tc.in, *a.Options, tc.want)
		}
	}
	// RFC822.* are sections answered under their own names.
	d, _ := decoderOf(" 1 (RFC822.HEADER RFC822)\r\n")
	a, err := d.ParseFetch(false)
	if err != nil || a.RFC822[0] != "RFC822.HEADER" || a.RFC822[1] != "RFC822" || len(a.Options.BodySection) != 2 || !a.Options.BodySection[0].Peek {
		t.Errorf("RFC822 items: %+v %v", a, err)
	}
	for _, bad := range []string{" 1 (FLAGS", " 1 BODY[4.TEXT", " 1 BODY[MIME]", " 1 BODY[]<1.0>", " 1 FOO", " 0 FLAGS", " 1 (FLAGS UID", " x FLAGS", " 1:2,,3 FLAGS"} {
		d, _ := decoderOf(bad + "\r\n")
		if _, err := d.ParseFetch(false); err == nil {
			if err = d.CRLF(); err == nil {
				t.Errorf("%q parsed", bad)
			}
		} else if !IsClientError(err) {
			t.Errorf("%q: %v is not a client error", bad, err)
		}
	}
}

// RFC 9051 section 6.4.4 search keys.
func TestParseSearch(t *testing.T) {
	d, _ := decoderOf(` RETURN (MIN COUNT) CHARSET utf-8 OR (FROM "a b" SEEN) DRAFT NOT KEYWORD $Junk 1:5 UID 7:* LARGER 10 ON 1-Feb-2024` + "\r\n")
	a, err := d.ParseSearch(false)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Extended || !a.Options.ReturnMin || !a.Options.ReturnCount || a.Options.ReturnAll || a.Charset != "UTF-8" {
		t.Errorf("options %+v", a)
	}
	c := a.Criteria
	if len(c.Or) != 1 || c.Or[0][0].Header[0].Key != "From" || c.Or[0][0].Header[0].Value != "a b" || c.Or[0][0].Flag[0] != imap.FlagSeen {
		t.Errorf("OR: %+v", c.Or)
	}
	if len(c.Not) != 1 || c.Not[0].Flag[0] != "$Junk" || len(c.SeqNum) != 1 || len(c.UID) != 1 || c.Larger != 10 {
		t.Errorf("criteria %+v", c)
	}
	if !c.Since.Equal(time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)) || !c.Before.Equal(time.Date(2024, 2, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("ON: since %v before %v", c.Since, c.Before)
	}
	d, _ = decoderOf(" RETURN () ALL\r\n")
	if a, err := d.ParseSearch(false); err != nil || !a.Options.ReturnAll {
		t.Errorf("RETURN (): %+v %v", a, err)
	}
	for _, bad := range []string{" OR SEEN", " NOT", " BEFORE 32-Jan-2020", " FOO", " (SEEN", " LARGER x", " HEADER"} {
		d, _ := decoderOf(bad + "\r\n")
		if _, err := d.ParseSearch(false); err == nil || !IsClientError(err) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// Literals: a synchronizing literal gets one continuation; one over the
// limit gets none (RFC 9051 section 4.3); a non-synchronizing one over the
// limit is a LiteralTooBigError with NonSync (the connection must end).
func TestLiterals(t *testing.T) {
	d, conts := decoderOf("{5}\r\nhello {3+}\r\nabc\r\n")
	s1, err1 := d.AString()
	d.SP()
	s2, err2 := d.AString()
	if s1 != "hello" || s2 != "abc" || err1 != nil || err2 != nil || *conts != 1 {
		t.Errorf("got %q %q (%v %v), %d continuations", s1, s2, err1, err2, *conts)
	}
	d, conts = decoderOf("{70000}\r\n")
	d.MaxLiteral = 65536
	_, err := d.AString()
	var tb *LiteralTooBigError
	if !errors.As(err, &tb) || tb.NonSync || *conts != 0 {
		t.Errorf("sync literal over the limit: %v, %d continuations", err, *conts)
	}
	d, _ = decoderOf("{70000+}\r\n")
	d.MaxLiteral = 65536
	_, err = d.AString()
	if !errors.As(err, &tb) || !tb.NonSync {
		t.Errorf("non-sync literal over the limit: %v", err)
	}
	// LITERAL- (RFC 7888 section 5): non-synchronizing literals up to 4096.
	d, _ = decoderOf("{5000+}\r\n")
	d.LiteralPlus = false
	if _, err = d.AString(); !errors.As(err, &tb) || !tb.NonSync {
		t.Errorf("LITERAL- over 4096: %v", err)
	}
}

// After a client error, the rest of the command is skipped without reading
// a non-synchronizing literal's bytes as commands; a synchronizing literal
// at the end of the line ends the command (no continuation was sent).
func TestDiscardCommand(t *testing.T) {
	d, _ := decoderOf("junk {13+}\r\nz1 DELETE x\r\n more\r\nNEXT\r\n")
	if err := d.DiscardCommand(1 << 20); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(d.r)
	if string(rest) != "NEXT\r\n" {
		t.Errorf("after discard: %q", rest)
	}
	d, _ = decoderOf("junk {10}\r\nz1 DELETE x\r\n")
	d.DiscardCommand(1 << 20)
	rest, _ = io.ReadAll(d.r)
	if string(rest) != "z1 DELETE x\r\n" {
		t.Errorf("a synchronizing literal was skipped: %q", rest)
	}
	d, _ = decoderOf("junk {999999+}\r\n")
	var tb *LiteralTooBigError
	if err := d.DiscardCommand(1000); !errors.As(err, &tb) {
		t.Errorf("big literal in a refused command: %v", err)
	}
}

// APPEND's message literal is not read by the parser: the handler decides.
func TestAppendMessages(t *testing.T) {
	d, conts := decoderOf(" INBOX (\\Seen $x) \"05-Mar-2024 10:00:00 +0100\" {5}\r\nhello\r\n")
	mbox, err := d.ParseAppendMailbox()
	if err != nil || mbox != "INBOX" {
		t.Fatal(mbox, err)
	}
	m, err := d.NextAppend(true)
	if err != nil {
		t.Fatal(err)
	}
	if m.Size != 5 || m.NonSync || len(m.Options.Flags) != 2 || m.Options.Time.IsZero() || *conts != 0 {
		t.Fatalf("%+v %+v conts %d", m, m.Options, *conts)
	}
	if err := m.Accept(100); err != nil || *conts != 1 {
		t.Fatal(err, *conts)
	}
	body, _ := io.ReadAll(m.Body())
	if string(body) != "hello" {
		t.Errorf("body %q", body)
	}
	if next, err := d.NextAppend(false); next != nil || err != nil {
		t.Errorf("next: %v %v", next, err)
	}
	// Over the limit: no continuation for a synchronizing literal.
	d, conts = decoderOf(" INBOX {500}\r\n")
	d.ParseAppendMailbox()
	m, _ = d.NextAppend(true)
	var tb *LiteralTooBigError
	if err := m.Accept(100); !errors.As(err, &tb) || tb.NonSync || *conts != 0 {
		t.Errorf("sync over limit: %v, %d", err, *conts)
	}
	d, _ = decoderOf(" INBOX {500+}\r\n")
	d.ParseAppendMailbox()
	m, _ = d.NextAppend(true)
	if err := m.Accept(100); !errors.As(err, &tb) || !tb.NonSync {
		t.Errorf("non-sync over limit: %v", err)
	}
}

// Mailbox names: INBOX in any case; modified UTF-7 for IMAP4rev1 clients
// (RFC 3501 5.1.3), UTF-8 once enabled.
func TestMailboxNames(t *testing.T) {
	d, _ := decoderOf("inbox \"&ZeVnLIqe-\" &\r\n")
	a, _ := d.Mailbox()
	d.SP()
	b, _ := d.Mailbox()
	d.SP()
	_, err := d.Mailbox()
	if a != "INBOX" || b != "日本語" || err == nil || !IsClientError(err) {
		t.Errorf("got %q %q %v", a, b, err)
	}
	d, _ = decoderOf("\"日本語\"")
	d.UTF8 = true
	if n, err := d.Mailbox(); n != "日本語" || err != nil {
		t.Errorf("UTF-8 name: %q %v", n, err)
	}
}

func TestParseListExtended(t *testing.T) {
	d, _ := decoderOf(` (SUBSCRIBED RECURSIVEMATCH) "" ("%" "Archive/*") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))` + "\r\n")
	a, err := d.ParseList()
	if err != nil {
		t.Fatal(err)
	}
	if !a.Extended || !a.Options.SelectSubscribed || !a.Options.SelectRecursiveMatch || len(a.Patterns) != 2 ||
		!a.Options.ReturnChildren || a.Options.ReturnStatus == nil || !a.Options.ReturnStatus.NumUnseen {
		t.Errorf("%+v %+v", a, a.Options)
	}
	d, _ = decoderOf(` (RECURSIVEMATCH) "" "*"` + "\r\n")
	if _, err := d.ParseList(); err == nil {
		t.Error("RECURSIVEMATCH alone accepted (RFC 5258 section 3.1)")
	}
}

func TestLineLimit(t *testing.T) {
	d, _ := decoderOf(strings.Repeat("a", 70000) + "\r\n")
	if _, err := d.Atom(); !errors.Is(err, ErrLineTooLong) {
		t.Errorf("long line: %v", err)
	}
	d, _ = decoderOf(`"abc` + "\r\n")
	if _, err := d.AString(); err == nil || !IsClientError(err) {
		t.Errorf("unterminated quoted string: %v", err)
	}
	d, _ = decoderOf(" " + strings.Repeat("(", 3000) + "\r\n")
	if _, err := d.ParseSearch(false); err == nil || !IsClientError(err) {
		t.Errorf("nested parentheses: %v", err)
	}
}

// The parser never waits for bytes past the end of the client's line (a
// short SEARCH hung the session: peeking for "RETURN" needed 7 bytes).
func TestNoReadPastTheLine(t *testing.T) {
	pr, pw := io.Pipe()
	d := NewDecoder(bufio.NewReader(pr))
	go pw.Write([]byte(" SEEN\r\n"))
	done := make(chan error, 1)
	go func() {
		_, err := d.ParseSearch(false)
		if err == nil {
			err = d.CRLF()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("SEARCH SEEN waited for more input")
	}
	pw.Close()
}
