package imapd

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

// RFC 9051 6.4.5: HEADER.FIELDS returns the named fields (any case, with
// their continuation lines) and the blank line; HEADER.FIELDS.NOT the rest.
func TestMessageSection(t *testing.T) {
	msg := []byte("From: a@example.org\r\nSubject: hello\r\n  folded\r\nX-Spam: yes\r\nsubject: second\r\n\r\nbody\r\n")
	for _, tc := range []struct {
		bs   imap.FetchItemBodySection
		want string
	}{
		{imap.FetchItemBodySection{HeaderFields: []string{"SUBJECT"}, Specifier: imap.PartSpecifierHeader},
			"Subject: hello\r\n  folded\r\nsubject: second\r\n\r\n"},
		{imap.FetchItemBodySection{HeaderFieldsNot: []string{"subject", "x-spam"}, Specifier: imap.PartSpecifierHeader},
			"From: a@example.org\r\n\r\n"},
		{imap.FetchItemBodySection{HeaderFields: []string{"Missing"}, Specifier: imap.PartSpecifierHeader}, "\r\n"},
		{imap.FetchItemBodySection{Specifier: imap.PartSpecifierText}, "body\r\n"},
		{imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Partial: &imap.SectionPartial{Offset: 6, Size: 5}}, "a@exa"},
		{imap.FetchItemBodySection{}, string(msg)},
	} {
		if got := string(messageSection(msg, &tc.bs)); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.bs, got, tc.want)
		}
	}
	// A header with bare LF and no body; a header only (no blank line).
	if got := string(messageSection([]byte("A: 1\nB: 2\n\nx"), &imap.FetchItemBodySection{HeaderFields: []string{"b"}})); got != "B: 2\n\r\n" {
		t.Errorf("bare LF: %q", got)
	}
	if got := string(messageSection([]byte("A: 1\r\nB: 2\r\n"), &imap.FetchItemBodySection{HeaderFields: []string{"a"}})); got != "A: 1\r\n\r\n" {
		t.Errorf("header only: %q", got)
	}
}
