package imapconn

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// writeSection streams data through w and closes it.
func writeSection(t *testing.T, w io.WriteCloser, data string) {
	t.Helper()
	if _, err := io.WriteString(w, data); err != nil {
		t.Errorf("write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestFetchRFC3501Example(t *testing.T) {
	// RFC 3501 section 8: the FETCH 12 FULL response.
	got := render(t, false, func(e *Encoder) {
		w := e.BeginFetch(12)
		w.WriteFlags([]imap.Flag{imap.FlagSeen})
		w.WriteInternalDate(time.Date(1996, 7, 17, 2, 44, 25, 0, time.FixedZone("", -7*3600)))
		w.WriteRFC822Size(4286)
		w.WriteEnvelope(rfc3501Envelope)
		w.WriteBody(textPart("PLAIN", 3028, 92, map[string]string{"CHARSET": "US-ASCII"}))
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	want := `* 12 FETCH (FLAGS (\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 4286 ENVELOPE ` +
		rfc3501EnvelopeText + ` BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92))` + "\r\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestFetchItems(t *testing.T) {
	hello := "hello"
	tests := []struct {
		name string
		f    func(w *FetchResponseWriter)
		want string
	}{
		{"UID", func(w *FetchResponseWriter) { w.WriteUID(4827313) }, "UID 4827313"},
		// RFC 7162 section 3.1.4.1: MODSEQ (mod-sequence-value).
		{"MODSEQ", func(w *FetchResponseWriter) { w.WriteModSeq(12121231777) }, "MODSEQ (12121231777)"},
		{"UID and FLAGS", func(w *FetchResponseWriter) {
			w.WriteUID(7)
			w.WriteFlags(nil)
		}, "UID 7 FLAGS ()"},
		// RFC 3501 section 7.4.2 BODYSTRUCTURE carries extension data; the
		// section 7.4.2 example data.
		{"BODYSTRUCTURE", func(w *FetchResponseWriter) { w.WriteBodyStructure(rfc3501Multipart) },
			`BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23 NIL NIL NIL NIL)` +
				`("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73 NIL NIL NIL NIL)` +
				` "MIXED" NIL NIL NIL NIL)`},
		{"BODY is the RFC 3501 section 7.4.2 example byte for byte", func(w *FetchResponseWriter) { w.WriteBody(rfc3501Multipart) },
			"BODY " + rfc3501MultipartText},
		// RFC 3501 section 6.4.5 / 7.4.2: BODY[<section>]<<origin>>.
		{"BODY[]", func(w *FetchResponseWriter) {
			writeSection(t, w.WriteBodySection(&imap.FetchItemBodySection{}, 5), hello)
		}, "BODY[] {5}\r\nhello"},
		{"BODY.PEEK answered as BODY", func(w *FetchResponseWriter) {
			writeSection(t, w.WriteBodySection(&imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader}, 5), hello)
		}, "BODY[HEADER] {5}\r\nhello"},
		{"BODY[TEXT]", func(w *FetchResponseWriter) {
			writeSection(t, w.WriteBodySection(&imap.FetchItemBodySection{Specifier: imap.PartSpecifierText}, 5), hello)
		}, "BODY[TEXT] {5}\r\nhello"},
		{"BODY[1.2]", func(w *FetchResponseWriter) {
			writeSection(t, w.WriteBodySection(&imap.FetchItemBodySection{Part: []int{1, 2}}, 5), hello)
		}, "BODY[1.2] {5}\r\nhello"},
		{"BODY[1.2.MIME]", func(w *FetchResponseWriter) {
			writeSection(t, w.WriteBodySection(&imap.FetchItemBodySection{Part: []int{1, 2}, Specifier: imap.PartSpecifierMIME}, 5), hello)
		}, "BODY[1.2.MIME] {5}\r\nhello"},
		{"BODY[3.TEXT]", func(w *FetchResponseWriter) {
			writeSection(t, w.WriteBodySection(&imap.FetchItemBodySection{Part: []int{3}, Specifier: imap.PartSpecifierText}, 5), hello)
		}, "BODY[3.TEXT] {5}\r\nhello"},
		{"BODY[HEADER.FIELDS (FROM TO)]", func(w *FetchResponseWriter) {
			writeSection(t, w.WriteBodySection(&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"FROM", "TO"}}, 5), hello)
		}, "BODY[HEADER.FIELDS (FROM TO)] {5}\r\nhello"},
		{"field names as requested", func(w *FetchResponseWriter) {
			writeSection(t, w.WriteBodySection(&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Date", "X(Y"}}, 0), "")
		}, "BODY[HEADER.FIELDS (Date \"X(Y\")] {0}\r\n"},
		{"BODY[1.HEADER.FIELDS.NOT (X)]", func(w *FetchResponseWriter) {
			writeSection(t, w.WriteBodySection(&imap.FetchItemBodySection{Part: []int{1}, Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"X"}}, 5), hello)
		}, "BODY[1.HEADER.FIELDS.NOT (X)] {5}\r\nhello"},
		// RFC 3501 section 7.4.2: "BODY[<section>]<<origin octet>>" — the
		// response carries the origin only, never <o.n>.
		{"partial BODY[]<0>", func(w *FetchResponseWriter) {
			writeSection(t, w.WriteBodySection(&imap.FetchItemBodySection{Partial: &imap.SectionPartial{Offset: 0, Size: 5}}, 5), hello)
		}, "BODY[]<0> {5}\r\nhello"},
		{"partial BODY[1.TEXT]<100>", func(w *FetchResponseWriter) {
			writeSection(t, w.WriteBodySection(&imap.FetchItemBodySection{Part: []int{1}, Specifier: imap.PartSpecifierText, Partial: &imap.SectionPartial{Offset: 100, Size: 1000}}, 5), hello)
		}, "BODY[1.TEXT]<100> {5}\r\nhello"},
		{"empty section", func(w *FetchResponseWriter) {
			writeSection(t, w.WriteBodySection(&imap.FetchItemBodySection{}, 0), "")
		}, "BODY[] {0}\r\n"},
		// RFC 3516 section 4.2: "BINARY" section-binary ["<" number ">"] SP (nstring / literal8).
		{"BINARY[5]<0>", func(w *FetchResponseWriter) {
			writeSection(t, w.WriteBinarySection(&imap.FetchItemBinarySection{Part: []int{5}, Partial: &imap.SectionPartial{Offset: 0, Size: 7}}, 3), "a\x00b")
		}, "BINARY[5]<0> ~{3}\r\na\x00b"},
		{"BINARY.PEEK[] answered as BINARY[]", func(w *FetchResponseWriter) {
			writeSection(t, w.WriteBinarySection(&imap.FetchItemBinarySection{Peek: true}, 2), "ok")
		}, "BINARY[] ~{2}\r\nok"},
		{"BINARY.SIZE[1.2]", func(w *FetchResponseWriter) {
			w.WriteBinarySectionSize(&imap.FetchItemBinarySectionSize{Part: []int{1, 2}}, 42)
		}, "BINARY.SIZE[1.2] 42"},
		// RFC 3501 section 7.4.2: RFC822, RFC822.HEADER, RFC822.TEXT answered under their names.
		{"RFC822", func(w *FetchResponseWriter) { writeSection(t, w.WriteRFC822(RFC822, 5), hello) }, "RFC822 {5}\r\nhello"},
		{"RFC822.HEADER", func(w *FetchResponseWriter) { writeSection(t, w.WriteRFC822(RFC822Header, 5), hello) }, "RFC822.HEADER {5}\r\nhello"},
		{"RFC822.TEXT after UID", func(w *FetchResponseWriter) {
			w.WriteUID(9)
			writeSection(t, w.WriteRFC822(RFC822Text, 5), hello)
			w.WriteFlags([]imap.Flag{imap.FlagSeen})
		}, "UID 9 RFC822.TEXT {5}\r\nhello FLAGS (\\Seen)"},
		{"RFC822Names: sections asked as RFC822.* keep their names", func(w *FetchResponseWriter) {
			hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
			txt := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText}
			other := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader}
			w.RFC822Names = map[*imap.FetchItemBodySection]string{hdr: RFC822Header, txt: RFC822Text}
			writeSection(t, w.WriteBodySection(hdr, 2), "h\n")
			writeSection(t, w.WriteBodySection(txt, 1), "t")
			writeSection(t, w.WriteBodySection(other, 1), "o")
		}, "RFC822.HEADER {2}\r\nh\n RFC822.TEXT {1}\r\nt BODY[HEADER] {1}\r\no"},
		{"ENVELOPE nil", func(w *FetchResponseWriter) { w.WriteEnvelope(nil) }, "ENVELOPE NIL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := render(t, false, func(e *Encoder) {
				w := e.BeginFetch(1)
				tt.f(w)
				if err := w.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			if want := "* 1 FETCH (" + tt.want + ")\r\n"; got != want {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		})
	}
}

func TestFetchErrors(t *testing.T) {
	tests := []struct {
		name string
		f    func(t *testing.T, w *FetchResponseWriter)
		want error // nil: any error
	}{
		{"section shorter than announced", func(t *testing.T, w *FetchResponseWriter) {
			s := w.WriteBodySection(&imap.FetchItemBodySection{}, 10)
			io.WriteString(s, "short")
			if err := s.Close(); !errors.Is(err, ErrLiteralSize) {
				t.Errorf("section Close = %v, want ErrLiteralSize", err)
			}
		}, ErrLiteralSize},
		{"section longer than announced", func(t *testing.T, w *FetchResponseWriter) {
			s := w.WriteBinarySection(&imap.FetchItemBinarySection{}, 2)
			if _, err := io.WriteString(s, "toolong"); !errors.Is(err, ErrLiteralSize) {
				t.Errorf("section Write = %v, want ErrLiteralSize", err)
			}
			s.Close()
		}, ErrLiteralSize},
		{"section not closed before the next item", func(t *testing.T, w *FetchResponseWriter) {
			s := w.WriteRFC822(RFC822, 2)
			io.WriteString(s, "ok")
			w.WriteUID(1)
		}, nil},
		{"unknown RFC822 item", func(t *testing.T, w *FetchResponseWriter) {
			w.WriteRFC822("RFC822.BOGUS", 0).Close()
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderErr(false, func(e *Encoder) {
				w := e.BeginFetch(1)
				tt.f(t, w)
				cerr := w.Close()
				if cerr == nil {
					t.Error("FETCH Close = nil, want the sticky error")
				}
			})
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("sticky error = %v, want %v", err, tt.want)
			}
		})
	}
}
