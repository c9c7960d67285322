package mimetree

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// crlf writes a message readably: lines joined with CRLF.
func crlf(lines ...string) string { return strings.Join(lines, "\r\n") }

func parse(t *testing.T, msg string) *storagev1.BodyPart {
	t.Helper()
	p, err := Parse(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	checkRanges(t, msg, p, 0, uint64(len(msg)))
	return p
}

// checkRanges checks that every part's header and body ranges lie inside
// its parent's body, in order, and that an encapsulated message fills its
// part's body.
func checkRanges(t *testing.T, msg string, p *storagev1.BodyPart, start, end uint64) {
	t.Helper()
	if p.HeaderOffset < start || p.HeaderOffset > p.BodyOffset || p.BodyOffset+p.Size > end {
		t.Fatalf("part %s/%s: header at %d, body at %d+%d, outside [%d, %d)",
			p.Type, p.Subtype, p.HeaderOffset, p.BodyOffset, p.Size, start, end)
	}
	next := p.BodyOffset
	for _, c := range p.Parts {
		checkRanges(t, msg, c, next, p.BodyOffset+p.Size)
		next = c.BodyOffset + c.Size
	}
	if p.Type == "message" && len(p.Parts) == 1 {
		c := p.Parts[0]
		if c.HeaderOffset != p.BodyOffset || c.BodyOffset+c.Size != p.BodyOffset+p.Size {
			t.Fatalf("encapsulated message at %d..%d, its part's body at %d..%d",
				c.HeaderOffset, c.BodyOffset+c.Size, p.BodyOffset, p.BodyOffset+p.Size)
		}
	}
}

func header(msg string, p *storagev1.BodyPart) string { return msg[p.HeaderOffset:p.BodyOffset] }
func body(msg string, p *storagev1.BodyPart) string {
	return msg[p.BodyOffset : p.BodyOffset+p.Size]
}

func params(p []*storagev1.BodyParam) string {
	var s []string
	for _, prm := range p {
		s = append(s, prm.Name+"="+prm.Value)
	}
	return strings.Join(s, "; ")
}

func wantType(t *testing.T, p *storagev1.BodyPart, typ, prm string) {
	t.Helper()
	if got := p.Type + "/" + p.Subtype; got != typ {
		t.Errorf("type %s, want %s", got, typ)
	}
	if got := params(p.Params); got != prm {
		t.Errorf("%s params %q, want %q", typ, got, prm)
	}
}

func wantBody(t *testing.T, msg string, p *storagev1.BodyPart, want string, lines uint64) {
	t.Helper()
	if got := body(msg, p); got != want {
		t.Errorf("%s/%s body %q, want %q", p.Type, p.Subtype, got, want)
	}
	if p.Lines != lines {
		t.Errorf("%s/%s lines %d, want %d", p.Type, p.Subtype, p.Lines, lines)
	}
}

func TestPlainText(t *testing.T) {
	msg := crlf(
		"From: Ann <ann@example.org>",
		"Subject: hello",
		"Content-Type: Text/Plain; Charset=UTF-8; format=flowed",
		"Content-Transfer-Encoding: Quoted-Printable",
		"Content-Language: en, de",
		"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==",
		"",
		"Hello,",
		"world=21",
		"")
	p := parse(t, msg)
	wantType(t, p, "text/plain", "charset=UTF-8; format=flowed")
	wantBody(t, msg, p, "Hello,\r\nworld=21\r\n", 2)
	if p.HeaderOffset != 0 || !strings.HasPrefix(header(msg, p), "From:") || !strings.HasSuffix(header(msg, p), "==\r\n\r\n") {
		t.Errorf("header %q", header(msg, p))
	}
	if p.Encoding != "quoted-printable" || p.Md5 != "Q2hlY2sgSW50ZWdyaXR5IQ==" || strings.Join(p.Language, "|") != "en|de" {
		t.Errorf("encoding %q md5 %q language %q", p.Encoding, p.Md5, p.Language)
	}
}

func TestNoContentType(t *testing.T) {
	msg := crlf("Subject: plain old mail", "", "Hi.", "")
	p := parse(t, msg)
	wantType(t, p, "text/plain", "charset=us-ascii")
	wantBody(t, msg, p, "Hi.\r\n", 1)
	if p.Encoding != "" || p.Disposition != "" || p.Envelope != nil || len(p.Parts) != 0 {
		t.Errorf("unexpected fields: %v", prototext.Format(p))
	}
}

func TestAlternative(t *testing.T) {
	msg := crlf(
		"Content-Type: multipart/alternative; boundary=\"=_alt\"",
		"",
		"This is a multi-part message in MIME format.",
		"--=_alt",
		"Content-Type: text/plain; charset=us-ascii",
		"",
		"Plain",
		"text",
		"--=_alt",
		"Content-Type: text/html; charset=us-ascii",
		"Content-Transfer-Encoding: 7bit",
		"",
		"<p>HTML</p>",
		"",
		"--=_alt--",
		"")
	p := parse(t, msg)
	wantType(t, p, "multipart/alternative", "boundary==_alt")
	if len(p.Parts) != 2 {
		t.Fatalf("%d parts", len(p.Parts))
	}
	wantType(t, p.Parts[0], "text/plain", "charset=us-ascii")
	wantBody(t, msg, p.Parts[0], "Plain\r\ntext", 1)
	if got := header(msg, p.Parts[0]); got != "Content-Type: text/plain; charset=us-ascii\r\n\r\n" {
		t.Errorf("part 1 header %q", got)
	}
	wantType(t, p.Parts[1], "text/html", "charset=us-ascii")
	wantBody(t, msg, p.Parts[1], "<p>HTML</p>\r\n", 1)
	if p.Parts[1].Encoding != "7bit" {
		t.Errorf("encoding %q", p.Parts[1].Encoding)
	}
	if want := msg[strings.Index(msg, "\r\n\r\n")+4:]; body(msg, p) != want {
		t.Errorf("multipart body %q, want %q", body(msg, p), want)
	}
}

func TestMixedWithAttachment(t *testing.T) {
	msg := crlf(
		"Content-Type: multipart/mixed; boundary=outer",
		"",
		"--outer",
		"Content-Type: multipart/alternative; boundary=inner",
		"",
		"--inner",
		"Content-Type: text/plain",
		"",
		"see attached",
		"--inner",
		"Content-Type: text/html",
		"",
		"<b>see attached</b>",
		"--inner--",
		"",
		"--outer",
		"Content-Type: application/pdf; name=\"report.pdf\"",
		"Content-Transfer-Encoding: base64",
		"Content-Disposition: Attachment; filename=\"report.pdf\"; size=12",
		"Content-ID: <part1@example.org>",
		"Content-Description: The report",
		"Content-Location: http://example.org/report.pdf",
		"",
		"JVBERi0xLjQK",
		"--outer--",
		"")
	p := parse(t, msg)
	wantType(t, p, "multipart/mixed", "boundary=outer")
	if len(p.Parts) != 2 || len(p.Parts[0].Parts) != 2 {
		t.Fatalf("tree %v", prototext.Format(p))
	}
	alt := p.Parts[0]
	wantType(t, alt, "multipart/alternative", "boundary=inner")
	wantBody(t, msg, alt.Parts[0], "see attached", 0)
	wantBody(t, msg, alt.Parts[1], "<b>see attached</b>", 0)
	// The inner multipart's body runs up to the line break before the outer delimiter.
	if !strings.HasSuffix(body(msg, alt), "--inner--\r\n") {
		t.Errorf("alternative body %q", body(msg, alt))
	}
	att := p.Parts[1]
	wantType(t, att, "application/pdf", "name=report.pdf")
	wantBody(t, msg, att, "JVBERi0xLjQK", 0)
	if att.Disposition != "attachment" || params(att.DispositionParams) != "filename=report.pdf; size=12" ||
		att.Encoding != "base64" || att.Id != "<part1@example.org>" || att.Description != "The report" ||
		att.Location != "http://example.org/report.pdf" {
		t.Errorf("attachment fields: %v", prototext.Format(att))
	}
}

func TestMessageRFC822(t *testing.T) {
	inner := crlf(
		"From: Bob <bob@example.com>",
		"To: ann@example.org",
		"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=",
		"Message-ID: <inner@example.com>",
		"Content-Type: multipart/mixed; boundary=in",
		"",
		"--in",
		"",
		"inner text",
		"--in--",
		"")
	msg := crlf(
		"Content-Type: multipart/mixed; boundary=out",
		"",
		"--out",
		"Content-Type: text/plain",
		"",
		"Forwarded:",
		"--out",
		"Content-Type: message/rfc822",
		"Content-Disposition: inline",
		"",
		inner,
		"--out--",
		"")
	p := parse(t, msg)
	if len(p.Parts) != 2 {
		t.Fatalf("%d parts", len(p.Parts))
	}
	m := p.Parts[1]
	wantType(t, m, "message/rfc822", "")
	// The CRLF before "--out--" belongs to the delimiter.
	wantBody(t, msg, m, inner, uint64(strings.Count(inner, "\n")))
	if m.Envelope.GetSubject() != "Grüße" || m.Envelope.GetMessageId() != "<inner@example.com>" ||
		len(m.Envelope.GetFrom()) != 1 || m.Envelope.From[0].Host != "example.com" {
		t.Errorf("envelope %v", prototext.Format(m.Envelope))
	}
	if len(m.Parts) != 1 {
		t.Fatalf("message/rfc822 with %d children", len(m.Parts))
	}
	in := m.Parts[0]
	wantType(t, in, "multipart/mixed", "boundary=in")
	if got, want := header(msg, in), inner[:strings.Index(inner, "\r\n\r\n")+4]; got != want {
		t.Errorf("encapsulated header %q, want %q", got, want)
	}
	if len(in.Parts) != 1 {
		t.Fatalf("encapsulated multipart with %d parts", len(in.Parts))
	}
	wantType(t, in.Parts[0], "text/plain", "charset=us-ascii")
	wantBody(t, msg, in.Parts[0], "inner text", 0)
	if header(msg, in.Parts[0]) != "\r\n" {
		t.Errorf("empty part header %q", header(msg, in.Parts[0]))
	}
}

func TestDigest(t *testing.T) {
	msg := crlf(
		"Content-Type: multipart/digest; boundary=d",
		"",
		"--d",
		"",
		"Subject: one",
		"",
		"first",
		"--d",
		"Content-Type: text/plain",
		"",
		"not a message",
		"--d--")
	p := parse(t, msg)
	if len(p.Parts) != 2 {
		t.Fatalf("%d parts", len(p.Parts))
	}
	wantType(t, p.Parts[0], "message/rfc822", "")
	if p.Parts[0].Envelope.GetSubject() != "one" || len(p.Parts[0].Parts) != 1 {
		t.Errorf("digest message: %v", prototext.Format(p.Parts[0]))
	}
	wantBody(t, msg, p.Parts[0].Parts[0], "first", 0)
	wantType(t, p.Parts[1], "text/plain", "")
	// No line break after the closing delimiter: still the end.
	wantBody(t, msg, p.Parts[1], "not a message", 0)
}

func TestMissingClosingBoundary(t *testing.T) {
	msg := crlf(
		"Content-Type: multipart/mixed; boundary=b",
		"",
		"--b",
		"Content-Type: text/plain",
		"",
		"one",
		"--b",
		"Content-Type: text/plain",
		"",
		"two",
		"and more",
		"")
	p := parse(t, msg)
	if len(p.Parts) != 2 {
		t.Fatalf("%d parts", len(p.Parts))
	}
	wantBody(t, msg, p.Parts[0], "one", 0)
	// As go-message: the last part ends at the end of input, without the
	// final line break (it could have been the delimiter's).
	wantBody(t, msg, p.Parts[1], "two\r\nand more", 1)
}

func TestMissingBoundary(t *testing.T) {
	for _, ct := range []string{
		"multipart/mixed",                        // no boundary parameter
		"multipart/mixed; boundary=\"declared\"", // another one than used
		"multipart/mixed; boundary=\"\"",
	} {
		msg := crlf("Content-Type: "+ct, "", "--used", "Content-Type: text/plain", "", "text", "--used--", "")
		p := parse(t, msg)
		wantType(t, p, "multipart/mixed", params(p.Params))
		if len(p.Parts) != 0 || body(msg, p) != msg[strings.Index(msg, "--used"):] {
			t.Errorf("%s: %v", ct, prototext.Format(p))
		}
	}
}

func TestHeaderWithoutBlankLine(t *testing.T) {
	msg := crlf("From: a@example.org", "Subject: headers only", "Content-Type: text/plain; charset=utf-8")
	p := parse(t, msg)
	wantType(t, p, "text/plain", "charset=utf-8")
	if p.BodyOffset != uint64(len(msg)) || p.Size != 0 || p.Lines != 0 {
		t.Errorf("body at %d+%d, want %d+0", p.BodyOffset, p.Size, len(msg))
	}

	// A part with no blank line is all header, up to the delimiter.
	msg = crlf("Content-Type: multipart/mixed; boundary=b", "", "--b", "Content-Type: image/png", "--b--", "")
	p = parse(t, msg)
	if len(p.Parts) != 1 {
		t.Fatalf("%d parts", len(p.Parts))
	}
	wantType(t, p.Parts[0], "image/png", "")
	if p.Parts[0].Size != 0 || header(msg, p.Parts[0]) != "Content-Type: image/png" {
		t.Errorf("part header %q, size %d", header(msg, p.Parts[0]), p.Parts[0].Size)
	}
}

func TestStrayHeaderLines(t *testing.T) {
	msg := crlf(
		"From ann@example.org Mon Jan  4 10:00:00 2016",
		"Subject: x",
		"This message was scanned for viruses",
		"  and folded",
		"Bad Name: x",
		": no name",
		"Content-Type: text/html;",
		"\tcharset=\"iso-8859-1\"",
		"",
		"<p>body</p>")
	p := parse(t, msg)
	wantType(t, p, "text/html", "charset=iso-8859-1")
	wantBody(t, msg, p, "<p>body</p>", 0)
}

func TestBareLF(t *testing.T) {
	msg := strings.Join([]string{
		"Content-Type: multipart/mixed; boundary=b",
		"",
		"--b",
		"Content-Type: text/plain",
		"",
		"line 1",
		"line 2",
		"",
		"--b",
		"Content-Type: message/rfc822",
		"",
		"Subject: inner",
		"",
		"inner",
		"--b--",
		""}, "\n")
	p := parse(t, msg)
	if len(p.Parts) != 2 {
		t.Fatalf("%d parts", len(p.Parts))
	}
	wantBody(t, msg, p.Parts[0], "line 1\nline 2\n", 2)
	m := p.Parts[1]
	wantBody(t, msg, m, "Subject: inner\n\ninner", 2)
	if header(msg, m.Parts[0]) != "Subject: inner\n\n" || m.Envelope.GetSubject() != "inner" {
		t.Errorf("encapsulated header %q", header(msg, m.Parts[0]))
	}
	wantBody(t, msg, m.Parts[0], "inner", 0)
}

func TestEightBitGarbage(t *testing.T) {
	msg := "Subject: J\xfcrgen \xff\xfe\r\nContent-Type: text/plain; charset=\"\xe4\"\r\nContent-ID: <\xe4@x>\r\n\r\n\x00\xff\x80\r\n\r"
	p := parse(t, msg)
	// Raw 8-bit header text ends up as U+FFFD: the tree must marshal.
	wantType(t, p, "text/plain", "charset=\uFFFD")
	wantBody(t, msg, p, "\x00\xff\x80\r\n\r", 1)
	if p.Id != "<\uFFFD@x>" {
		t.Errorf("id %q", p.Id)
	}
	if _, err := proto.Marshal(p); err != nil {
		t.Error(err)
	}
}

func TestRFC2231(t *testing.T) {
	msg := crlf(
		"Content-Type: application/octet-stream;",
		" name*0*=UTF-8''%E2%82%AC%20rates;",
		" name*1=\" 2016.pdf\"; x-mac-type=\"50444620\"",
		"Content-Disposition: attachment;",
		" filename=\"=?UTF-8?B?4oKsIHJhdGVzIDIwMTYucGRm?=\"; filename=\"dup.pdf\"; ; broken",
		"",
		"x")
	p := parse(t, msg)
	wantType(t, p, "application/octet-stream", "name=€ rates 2016.pdf; x-mac-type=50444620")
	if p.Disposition != "attachment" || params(p.DispositionParams) != "filename=€ rates 2016.pdf" {
		t.Errorf("disposition %q %q", p.Disposition, params(p.DispositionParams))
	}
}

func TestDeepNesting(t *testing.T) {
	const depth = 200
	var b strings.Builder
	for i := range depth {
		b.WriteString("Content-Type: multipart/mixed; boundary=b" + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + "\r\n\r\n")
		b.WriteString("--b" + string(rune('a'+i%26)) + strings.Repeat("x", i/26) + "\r\n")
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ndeep\r\n")
	msg := b.String()
	p := parse(t, msg)
	n := 0
	for ; len(p.Parts) > 0; p = p.Parts[0] {
		wantType(t, p, "multipart/mixed", params(p.Params))
		n++
	}
	if n != maxDepth {
		t.Errorf("%d levels of multipart, want %d", n, maxDepth)
	}
	// The container too deep is one opaque leaf holding the rest.
	wantType(t, p, "application/octet-stream", "")
	if !strings.HasSuffix(body(msg, p), "deep") {
		t.Errorf("deepest body %q", body(msg, p)[max(0, int(p.Size)-40):])
	}

	// Nested messages count as levels too.
	msg = strings.Repeat("Content-Type: message/rfc822\r\n\r\n", depth) + "\r\nbody"
	p = parse(t, msg)
	for n = 0; len(p.Parts) > 0; p = p.Parts[0] {
		n++
	}
	if n != maxDepth {
		t.Errorf("%d levels of message, want %d", n, maxDepth)
	}
}

func TestLongHeader(t *testing.T) {
	// A field too long to keep is left out, the others are not.
	msg := "Subject: " + strings.Repeat("long ", 100_000) + "\r\n\tand folded\r\nContent-Type: text/html\r\n\r\nbody"
	p := parse(t, msg)
	wantType(t, p, "text/html", "")
	wantBody(t, msg, p, "body", 0)

	// Fields past the cap are not seen; the body is still found.
	msg = "X-Pad: " + strings.Repeat("x", maxHeader-9) + "\r\nContent-Type: text/html\r\n\r\nbody"
	p = parse(t, msg)
	wantType(t, p, "text/plain", "charset=us-ascii")
	wantBody(t, msg, p, "body", 0)
}

type failingReader struct{ r io.Reader }

var errBroken = errors.New("disk on fire")

func (f failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errBroken
	}
	return n, err
}

func TestReadError(t *testing.T) {
	msg := crlf("Content-Type: multipart/mixed; boundary=b", "", "--b", "", "text", "--b--")
	if _, err := Parse(failingReader{strings.NewReader(msg)}); !errors.Is(err, errBroken) {
		t.Errorf("err %v, want %v", err, errBroken)
	}
}

func TestTruncatedInput(t *testing.T) {
	// Any prefix of a message parses, and its ranges stay inside it.
	msg := crlf(
		"Content-Type: multipart/mixed; boundary=b",
		"",
		"--b",
		"Content-Type: message/rfc822",
		"",
		"Content-Type: multipart/alternative; boundary=c",
		"",
		"--c",
		"",
		"x",
		"--c--",
		"--b--",
		"")
	for n := range len(msg) + 1 {
		parse(t, msg[:n])
	}
	if _, err := Parse(bytes.NewReader(nil)); err != nil {
		t.Error(err)
	}
}

func TestManyParts(t *testing.T) {
	msg := "Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		strings.Repeat("--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c--\r\n", 4000) + "--b--\r\n"
	p := parse(t, msg)
	nodes := 0
	var walk func(*storagev1.BodyPart)
	walk = func(p *storagev1.BodyPart) {
		nodes++
		for _, c := range p.Parts {
			walk(c)
		}
	}
	walk(p)
	if nodes != maxParts {
		t.Errorf("%d nodes, want %d", nodes, maxParts)
	}
	// Parts past the limit are in the multipart's body, not in the tree.
	if last := p.Parts[len(p.Parts)-1]; last.BodyOffset+last.Size >= uint64(len(msg))-100 || p.BodyOffset+p.Size != uint64(len(msg)) {
		t.Errorf("last part ends at %d, multipart at %d, message %d", last.BodyOffset+last.Size, p.BodyOffset+p.Size, len(msg))
	}
}

// hugeReader gives a message of a 10 MB header line and a 100 MB attachment
// without holding either.
type hugeReader struct {
	parts [][]byte
	fill  []int // how often each part repeats
	off   int   // into parts[0]
}

func (h *hugeReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && len(h.parts) > 0 {
		if h.fill[0] == 0 {
			h.parts, h.fill = h.parts[1:], h.fill[1:]
			continue
		}
		c := copy(p[n:], h.parts[0][h.off:])
		n, h.off = n+c, h.off+c
		if h.off == len(h.parts[0]) {
			h.off = 0
			h.fill[0]--
		}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func TestBoundedMemory(t *testing.T) {
	line := strings.Repeat("UEsDBBQAAAAIAA", 5) + "==\r\n"
	lines := 100 << 20 / len(line)
	r := &hugeReader{
		parts: [][]byte{
			[]byte("Subject: x"), []byte(" long"), []byte("\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
				"Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n"),
			[]byte(line), []byte("--b--\r\n"),
		},
		fill: []int{1, 2 << 20, 1, lines, 1},
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p, err := Parse(r)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Parts) != 1 || p.Parts[0].Size != uint64(lines*len(line)-2) || p.Parts[0].Type != "application" {
		t.Fatalf("tree %v", prototext.Format(p))
	}
	t.Logf("allocated %d bytes", after.TotalAlloc-before.TotalAlloc)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2<<20 {
		t.Errorf("parsing a 110 MB message allocated %d bytes", alloc)
	}
}

// FuzzParse checks that no input makes Parse fail, panic or give ranges
// outside the message.
func FuzzParse(f *testing.F) {
	f.Add(crlf("Content-Type: multipart/mixed; boundary=b", "", "--b", "Content-Type: message/rfc822", "",
		"Content-Type: multipart/digest; boundary=c", "", "--c", "", "x", "--c--", "--b--", ""))
	f.Add("Content-Type: multipart/alternative; boundary=b\n\n--b\n\nx\n--b\nContent-Type: text/html\n\ny\n--b--\n")
	f.Add("Subject: x\r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		parse(t, msg)
	})
}
