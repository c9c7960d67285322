package envelope

import (
	"strings"
	"testing"
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
