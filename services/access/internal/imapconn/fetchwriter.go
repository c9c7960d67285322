package imapconn

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// FetchResponseWriter writes one "* seq FETCH (...)" response, item by
// item, with the method set of go-imap's imapserver.FetchResponseWriter
// (plus WriteRFC822 and WriteModSeq). It is used by one goroutine, takes
// no lock and never blocks beyond the underlying writer.
//
// Section contents are streamed: WriteBodySection, WriteBinarySection and
// WriteRFC822 return a writer that must receive exactly the announced
// number of bytes and then be closed before the next item. A size mismatch
// is an error returned by that writer's Close (or Write) and sticky in the
// Encoder: the response stream is then broken and the caller must close
// the connection rather than continue.
type FetchResponseWriter struct {
	// RFC822Names maps the body sections that were asked for as RFC822,
	// RFC822.HEADER or RFC822.TEXT (by pointer, as parsed) to that name:
	// WriteBodySection answers those under the RFC822* name instead of
	// BODY[...]. nil: every section is answered as BODY[...].
	RFC822Names map[*imap.FetchItemBodySection]string

	e      *Encoder
	items  int
	closed bool
	uid    imap.UID // as written by WriteUID
}

// BeginFetch starts "* seq FETCH (". Finish it with Close.
func (e *Encoder) BeginFetch(seq uint32) *FetchResponseWriter {
	e.Atom("* ").Number(seq).Atom(" FETCH (")
	return &FetchResponseWriter{e: e}
}

// item writes the separator before an item and its name.
func (w *FetchResponseWriter) item(name string) *Encoder {
	if w.closed {
		w.e.setErr(errors.New("imapconn: FETCH item written after Close"))
	}
	if w.items > 0 {
		w.e.SP()
	}
	w.items++
	return w.e.Atom(name)
}

// WriteUID writes "UID n".
func (w *FetchResponseWriter) WriteUID(uid imap.UID) {
	w.uid = uid
	w.item("UID ").Number(uint32(uid))
}

// WriteFlags writes "FLAGS (flags)".
func (w *FetchResponseWriter) WriteFlags(flags []imap.Flag) {
	if h := w.e.SessionFlags; h != nil && w.uid != 0 {
		flags = h(w.uid, flags)
	}
	w.item("FLAGS ").Flags(flags)
}

// WriteRFC822Size writes "RFC822.SIZE n".
func (w *FetchResponseWriter) WriteRFC822Size(size int64) {
	w.item("RFC822.SIZE ").Number64(uint64(max(size, 0)))
}

// WriteInternalDate writes "INTERNALDATE date-time".
func (w *FetchResponseWriter) WriteInternalDate(t time.Time) {
	w.item("INTERNALDATE ").DateTime(t)
}

// WriteModSeq writes "MODSEQ (n)" (RFC 7162).
func (w *FetchResponseWriter) WriteModSeq(modSeq uint64) {
	w.item("MODSEQ (").Number64(modSeq).Special(')')
}

// WriteEnvelope writes "ENVELOPE (...)".
func (w *FetchResponseWriter) WriteEnvelope(env *Envelope) {
	w.item("ENVELOPE ").Envelope(env)
}

// WriteBodyStructure writes "BODYSTRUCTURE ..." with extension data.
func (w *FetchResponseWriter) WriteBodyStructure(bs imap.BodyStructure) {
	w.item("BODYSTRUCTURE ").BodyStructure(bs, true)
}

// WriteBody writes "BODY ..." (the non-extensible BODYSTRUCTURE form).
func (w *FetchResponseWriter) WriteBody(bs imap.BodyStructure) {
	w.item("BODY ").BodyStructure(bs, false)
}

// WriteBodySection writes "BODY[section]<origin> {size}" and returns the
// writer for the size bytes of content. The section is named as requested
// (BODY.PEEK is answered as BODY); a partial request <o.n> is answered
// with its origin only, <o>. The content goes out as a plain literal.
// A section found in RFC822Names is answered as WriteRFC822 does.
func (w *FetchResponseWriter) WriteBodySection(section *imap.FetchItemBodySection, size int64) io.WriteCloser {
	if name, ok := w.RFC822Names[section]; ok && section != nil {
		return w.WriteRFC822(name, size)
	}
	var b strings.Builder
	b.WriteString("BODY[")
	writeSectionSpec(&b, section)
	b.WriteByte(']')
	if section != nil {
		writeOrigin(&b, section.Partial)
	}
	b.WriteByte(' ')
	w.item(b.String())
	return w.e.Literal(size, false)
}

// RFC822 item names for WriteRFC822.
const (
	RFC822       = "RFC822"        // = BODY[]
	RFC822Header = "RFC822.HEADER" // = BODY.PEEK[HEADER]
	RFC822Text   = "RFC822.TEXT"   // = BODY[TEXT]
)

// WriteRFC822 answers the IMAP4rev1 items RFC822, RFC822.HEADER and
// RFC822.TEXT under their own names ("RFC822.HEADER {n}" ...), which
// imap.FetchItemBodySection cannot express: either the caller calls
// WriteRFC822 instead of WriteBodySection, or it sets RFC822Names and
// keeps calling WriteBodySection. kind is one of the RFC822* constants;
// anything else is an error.
func (w *FetchResponseWriter) WriteRFC822(kind string, size int64) io.WriteCloser {
	switch kind {
	case RFC822, RFC822Header, RFC822Text:
	default:
		w.e.setErr(fmt.Errorf("imapconn: unknown RFC822 fetch item %q", kind))
	}
	w.item(kind + " ")
	return w.e.Literal(size, false)
}

// WriteBinarySection writes "BINARY[part]<origin> ~{size}" (RFC 3516) and
// returns the writer for the size bytes of decoded content, always sent as
// a literal8 so it may hold NUL.
func (w *FetchResponseWriter) WriteBinarySection(section *imap.FetchItemBinarySection, size int64) io.WriteCloser {
	var b strings.Builder
	b.WriteString("BINARY[")
	if section != nil {
		writePart(&b, section.Part)
	}
	b.WriteByte(']')
	if section != nil {
		writeOrigin(&b, section.Partial)
	}
	b.WriteByte(' ')
	w.item(b.String())
	return w.e.Literal(size, true)
}

// WriteBinarySectionSize writes "BINARY.SIZE[part] n" (RFC 3516).
func (w *FetchResponseWriter) WriteBinarySectionSize(section *imap.FetchItemBinarySectionSize, size uint32) {
	var b strings.Builder
	b.WriteString("BINARY.SIZE[")
	if section != nil {
		writePart(&b, section.Part)
	}
	b.WriteString("] ")
	w.item(b.String()).Number(size)
}

// Close writes ")" CRLF and returns the encoder's sticky error. It does
// not flush.
func (w *FetchResponseWriter) Close() error {
	if w.closed {
		return w.e.err
	}
	w.closed = true
	w.e.Special(')').CRLF()
	return w.e.err
}

func writePart(b *strings.Builder, part []int) {
	for i, p := range part {
		if i > 0 {
			b.WriteByte('.')
		}
		fmt.Fprintf(b, "%d", p)
	}
}

func writeOrigin(b *strings.Builder, p *imap.SectionPartial) {
	if p != nil {
		fmt.Fprintf(b, "<%d>", max(p.Offset, 0))
	}
}

// writeSectionSpec writes the inside of BODY[...]: section-part, then
// "." and the specifier when both are present; HEADER with field lists is
// HEADER.FIELDS (A B) or HEADER.FIELDS.NOT (A B).
func writeSectionSpec(b *strings.Builder, s *imap.FetchItemBodySection) {
	if s == nil {
		return
	}
	writePart(b, s.Part)
	spec := string(s.Specifier)
	var fields []string
	if s.Specifier == imap.PartSpecifierHeader || s.Specifier == imap.PartSpecifierNone {
		switch {
		case len(s.HeaderFields) > 0:
			spec, fields = "HEADER.FIELDS", s.HeaderFields
		case len(s.HeaderFieldsNot) > 0:
			spec, fields = "HEADER.FIELDS.NOT", s.HeaderFieldsNot
		}
	}
	if spec == "" {
		return
	}
	if len(s.Part) > 0 {
		b.WriteByte('.')
	}
	b.WriteString(spec)
	if fields != nil {
		b.WriteString(" (")
		for i, f := range fields {
			if i > 0 {
				b.WriteByte(' ')
			}
			writeAString(b, f)
		}
		b.WriteByte(')')
	}
}

// writeAString writes s as an atom when it is one (RFC 9051 ASTRING-CHAR
// without "]", which would end the section), else as a quoted string.
// Header field names are printable ASCII without ":" so quoting suffices.
func writeAString(b *strings.Builder, s string) {
	atom := s != ""
	for i := 0; i < len(s) && atom; i++ {
		c := s[i]
		atom = c > 0x20 && c < 0x7f && !strings.ContainsRune(`(){%*"\]`, rune(c))
	}
	if atom {
		b.WriteString(s)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}
