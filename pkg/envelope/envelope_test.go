package envelope

import (
	"strings"
	"testing"
	"unicode/utf8"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

func TestParseEnvelope(t *testing.T) {
	msg := "From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\r\n" +
		"To: a@example.test, \"B, Bee\" <b@example.test>\r\n" +
		"Subject: =?iso-8859-1?q?Gr=FC=DFe?= and\r\n more\r\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 -0700\r\n" +
		"Message-ID: <id@example.org>\r\n" +
		"\r\n" +
		"Body\r\n"
	hs := HeaderSize([]byte(msg))
	if want := strings.Index(msg, "\r\n\r\n") + 4; hs != want {
		t.Fatalf("header size %d, want %d", hs, want)
	}
	env := Parse([]byte(msg[:hs]))
	if env.Subject != "Grüße and more" {
		t.Errorf("subject %q", env.Subject)
	}
	if len(env.From) != 1 || env.From[0].Name != "Jörg" || env.From[0].Mailbox != "jorg" || env.From[0].Host != "example.org" {
		t.Errorf("from %v", env.From)
	}
	if len(env.To) != 2 || env.To[1].Name != "B, Bee" {
		t.Errorf("to %v", env.To)
	}
	if env.Date == nil || env.Date.AsTime().UTC().Hour() != 22 {
		t.Errorf("date %v", env.Date)
	}
	if env.MessageId != "<id@example.org>" {
		t.Errorf("message-id %q", env.MessageId)
	}
}

func TestParseMalformed(t *testing.T) {
	// Broken address list, 8-bit garbage, no colon line, bare LF line endings.
	msg := "From: broken <<<@, ok@example.org\nSubject: \xff\xfe bad\nnot a header\nDate: yesterday\n\nbody"
	hs := HeaderSize([]byte(msg))
	if hs != strings.Index(msg, "\n\n")+2 {
		t.Fatalf("header size %d", hs)
	}
	env := Parse([]byte(msg[:hs]))
	if len(env.From) != 1 || env.From[0].Mailbox != "ok" {
		t.Errorf("from %v", env.From)
	}
	if env.Date != nil || env.DateRaw != "yesterday" {
		t.Errorf("date %v %q", env.Date, env.DateRaw)
	}
	if !strings.HasSuffix(env.Subject, " bad") {
		t.Errorf("subject %q", env.Subject)
	}
}

func TestHeaderSizeWithoutBlankLine(t *testing.T) {
	if HeaderSize([]byte("Subject: x\r\nFrom: y")) != -1 {
		t.Fatal("incomplete header reported complete")
	}
}

// RFC 5322 3.4.1: comments and folding white space may surround the local
// part and the domain of an address; such an address used to parse to
// nothing (an ENVELOPE of NIL, a SEARCH FROM that missed).
func TestAddressesWithComments(t *testing.T) {
	for _, tc := range []struct{ header, name, mailbox, host string }{
		{"From: <user (comment)@ (comment) domain.org>\r\n\r\n", "", "user", "domain.org"},
		{"From: Pete (a comment) <pete(his account)@silly.test(his host)>\r\n\r\n", "Pete", "pete", "silly.test"},
		{"From: \"Quoted (not a comment)\" <q@example.org>\r\n\r\n", "Quoted (not a comment)", "q", "example.org"},
	} {
		env := Parse([]byte(tc.header))
		if len(env.From) != 1 || env.From[0].Name != tc.name || env.From[0].Mailbox != tc.mailbox || env.From[0].Host != tc.host {
			t.Errorf("%q: %+v", tc.header, env.From)
		}
	}
}

// FuzzEnvelope: any header parses without a panic into valid UTF-8 fields
// of bounded length (protobuf strings must be UTF-8).
func FuzzEnvelope(f *testing.F) {
	for _, seed := range []string{
		"From: <user (comment)@ (comment) domain.org>\r\nTo: a@b, \"c, d\" <e@f>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\n",
		"From: ((((nested\r\nTo: <a@b\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\n\r\n", "Sender: \"unterminated\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, header []byte) {
		env := Parse(header)
		for _, list := range [][]*storagev1.Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
			for _, a := range list {
				for _, s := range []string{a.Name, a.Mailbox, a.Host} {
					if !utf8.ValidString(s) || len(s) > maxFieldLen {
						t.Fatalf("field %q of %q", s, header)
					}
				}
			}
		}
		if !utf8.ValidString(env.Subject) {
			t.Fatalf("subject %q", env.Subject)
		}
	})
}
