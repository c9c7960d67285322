package imapconn

import (
	"errors"
	"strings"
	"testing"
)

// RFC 3501 section 5.1.3: modified UTF-7 mailbox names.
func TestMailboxNameRoundTrip(t *testing.T) {
	tests := []struct {
		name, utf8, mutf7 string
	}{
		{"5.1.3 example", "~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
		{"plain ASCII represents itself", "INBOX/Sent Items", "INBOX/Sent Items"},
		{"& is &-", "Tom & Jerry", "Tom &- Jerry"},
		{"only &", "&", "&-"},
		{"empty", "", ""},
		{"one BMP char, 2 bytes: padding bits", "é", "&AOk-"},
		{"two BMP chars, 4 bytes", "éé", "&AOkA6Q-"},
		{"three BMP chars, 6 bytes: no padding", "ééé", "&AOkA6QDp-"},
		{"supplementary plane via surrogates", "mail😀", "mail&2D3eAA-"},
		{"control characters are encoded", "a\tb", "a&AAk-b"},
		{"DEL is encoded", "a\x7f", "a&AH8-"},
		{"ASCII between non-ASCII ends the run", "é/é", "&AOk-/&AOk-"},
		{"& right after non-ASCII", "é&", "&AOk-&-"},
		{", and + are plain", "a,b+c", "a,b+c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EncodeMailboxName(tt.utf8); got != tt.mutf7 {
				t.Errorf("EncodeMailboxName(%q) = %q, want %q", tt.utf8, got, tt.mutf7)
			}
			got, err := DecodeMailboxName(tt.mutf7)
			if err != nil || got != tt.utf8 {
				t.Errorf("DecodeMailboxName(%q) = %q, %v; want %q", tt.mutf7, got, err, tt.utf8)
			}
		})
	}
}

func TestEncodeMailboxNameInvalidUTF8(t *testing.T) {
	// Invalid UTF-8 becomes U+FFFD.
	if got, want := EncodeMailboxName("a\xffb"), "a&,,0-b"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// RFC 3501 section 5.1.3: malformed modified UTF-7 is a client error.
func TestDecodeMailboxNameMalformed(t *testing.T) {
	tests := []struct{ name, in string }{
		{"bare & at end", "a&"},
		{"& not closed by -", "a&AOk"},
		{"& followed by non-base64 then end", "&/-"},
		{"character outside modified base64 (/ is not allowed)", "&AO/-"},
		{"standard base64 padding", "&AOk=-"},
		{"8-bit byte", "caf\xc3\xa9"},
		{"8-bit byte after a run", "&AOk-\xc3\xa9"},
		{"control character", "a\tb"},
		{"odd UTF-16: one byte", "&AO-"},
		{"odd UTF-16: three bytes", "&AOkA-"},
		{"superfluous base64 character", "&AOkA6QDpA-"},
		{"non-zero padding bits", "&AOl-"},
		{"encoded printable ASCII", "&AGE-"},
		{"encoded &", "&ACY-"},
		{"unpaired high surrogate", "&2D0-"},
		{"unpaired low surrogate", "&3gA-"},
		{"high surrogate followed by non-surrogate", "&2D0A6Q-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeMailboxName(tt.in)
			if err == nil {
				t.Fatalf("DecodeMailboxName(%q) = %q, want an error", tt.in, got)
			}
			if !errors.Is(err, ErrMailboxName) {
				t.Errorf("error %v does not wrap ErrMailboxName", err)
			}
		})
	}
}

func TestMailboxNameRoundTripAllPlanes(t *testing.T) {
	var b strings.Builder
	for r := rune(1); r < 0x11000; r += 97 {
		if r >= 0xd800 && r < 0xe000 {
			continue
		}
		b.WriteRune(r)
	}
	in := b.String()
	enc := EncodeMailboxName(in)
	for i := 0; i < len(enc); i++ {
		if enc[i] < 0x20 || enc[i] > 0x7e {
			t.Fatalf("encoded name has byte 0x%02x", enc[i])
		}
	}
	out, err := DecodeMailboxName(enc)
	if err != nil || out != in {
		t.Fatalf("round trip failed: %v", err)
	}
}
