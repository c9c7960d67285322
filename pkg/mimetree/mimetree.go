// Package mimetree parses the MIME structure of a message once, when it is
// stored, into the tree (storagev1.BodyPart) that IMAP needs later: what
// BODYSTRUCTURE answers (RFC 9051 7.5.2), and where each part's header and
// body lie in the stored octets, so that BODY[n], BODY[n.MIME] and BINARY[n]
// can be served by reading a byte range instead of parsing the message again.
//
// The parser streams: bodies are only counted, headers are kept up to a cap,
// so memory stays bounded whatever the message. It is lenient as mail servers
// must be — broken MIME yields the best tree that can be read, never an
// error. Part boundaries are found as go-message's multipart reader finds
// them (go-imap's BODYSTRUCTURE is computed with it; see multipart.go), so
// sizes and line counts match what clients of go-imap have been told.
package mimetree

import (
	"bufio"
	"bytes"
	"io"
	"strings"

	"github.com/mailfleet/mailfleet/pkg/envelope"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

const (
	// maxDepth bounds nesting of multiparts and encapsulated messages: a
	// deeper container is kept as one opaque part (see opaque).
	maxDepth = 50
	// maxHeader is how much of one header is kept for parsing; the rest is
	// read past and counted. Real headers are a few KB.
	maxHeader = 128 << 10
	// maxParts and maxHeaders bound the tree (parts, and the header text
	// its strings come from); containers past them are kept opaque.
	maxParts   = 5000
	maxHeaders = 4 << 20
	// bufSize is each level's read buffer. go-message uses 4096 too; it must
	// exceed the longest "\r\n--boundary" looked for (RFC 2046: 70).
	bufSize = 4096
)

// Parse reads a whole message from r and returns its MIME tree. Memory stays
// bounded whatever the message size (headers are capped, bodies are streamed
// through, only counted; MD5 is not computed, Content-MD5 header value is copied).
// Malformed MIME is never an error; only an I/O error from r is.
func Parse(r io.Reader) (*storagev1.BodyPart, error) {
	src := &stickyReader{r: r}
	p, _ := new(parser).entity(newStream(src, 0), 0, false)
	if src.err != nil && src.err != io.EOF {
		return nil, src.err
	}
	return p, nil
}

// stickyReader keeps the first error of the message's reader, which every
// level below only sees as the end of its region, and never reads again
// after it (io.Reader promises nothing then).
type stickyReader struct {
	r   io.Reader
	err error
}

func (s *stickyReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	s.err = err
	return n, err
}

// stream is a buffered reader over one region of the message (the whole
// message, one part, or an encapsulated message) that knows the offset of
// its next octet in the message, and counts the octets and line feeds it
// has taken from its region.
type stream struct {
	br   *bufio.Reader
	src  *counter
	base uint64 // offset of the region in the message
}

func newStream(r io.Reader, base uint64) *stream {
	c := &counter{r: r}
	return &stream{br: bufio.NewReaderSize(c, bufSize), src: c, base: base}
}

// pos is the message offset of the next octet s returns.
func (s *stream) pos() uint64 { return s.base + s.src.n - uint64(s.br.Buffered()) }

// drain reads s to the end of its region and returns the octets and line
// feeds it read.
func (s *stream) drain() (n, lines uint64) {
	for {
		if s.br.Buffered() == 0 {
			if _, err := s.br.Peek(1); err != nil {
				return n, lines
			}
		}
		b, _ := s.br.Peek(s.br.Buffered())
		n += uint64(len(b))
		lines += uint64(bytes.Count(b, []byte{'\n'}))
		s.br.Discard(len(b))
	}
}

type counter struct {
	r        io.Reader
	n, lines uint64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	c.lines += uint64(bytes.Count(p[:n], []byte{'\n'}))
	return n, err
}

// parser holds what bounds the tree of one message: a message of a
// million empty parts must not make a million nodes.
type parser struct {
	parts       int // parts made so far
	headerBytes int // header octets kept so far: the tree's text comes from them
}

// full reports whether the tree has grown as large as it may: containers
// found from then on are not opened.
func (ps *parser) full() bool { return ps.parts >= maxParts || ps.headerBytes >= maxHeaders }

// entity parses one entity (header and body) that fills s's region, and
// returns it with its (capped) header. inDigest is true for the parts of a
// multipart/digest, whose default type is message/rfc822 (RFC 2046 5.1.5).
func (ps *parser) entity(s *stream, depth int, inDigest bool) (*storagev1.BodyPart, []byte) {
	p := &storagev1.BodyPart{HeaderOffset: s.pos()}
	header := readHeader(s.br)
	p.BodyOffset = s.pos()
	ps.parts++
	ps.headerBytes += len(header)
	describe(p, header, inDigest)

	isMessage := p.Type == "message" && (p.Subtype == "rfc822" || p.Subtype == "global")
	if (p.Type == "multipart" || isMessage) && (depth >= maxDepth || ps.full()) {
		opaque(p)
		isMessage = false
	}
	switch {
	case p.Type == "multipart":
		ps.multipart(s, p, depth)
		s.drain() // the epilogue, or the parts past the limits
		p.Size = s.pos() - p.BodyOffset
	case isMessage:
		// The body is a message of its own, header first; the part's size
		// and lines are those of all of it.
		inner := newStream(s.br, p.BodyOffset)
		child, childHeader := ps.entity(inner, depth+1, false)
		inner.drain()
		p.Parts = []*storagev1.BodyPart{child}
		p.Envelope = envelope.Parse(childHeader)
		p.Size, p.Lines = inner.src.n, inner.src.lines
	default:
		n, lines := s.drain()
		p.Size = n
		if p.Type == "text" {
			p.Lines = lines
		}
	}
	return p, header
}

// opaque turns a container past the limits into a leaf that clients can
// still fetch as a whole but need not descend into.
func opaque(p *storagev1.BodyPart) {
	p.Type, p.Subtype, p.Params = "application", "octet-stream", nil
}

// multipart finds the parts of a multipart body in s and appends them to
// p.Parts. Without a usable boundary there are none.
func (ps *parser) multipart(s *stream, p *storagev1.BodyPart, depth int) {
	boundary := ""
	for _, prm := range p.Params {
		if prm.Name == "boundary" {
			boundary = prm.Value
		}
	}
	if boundary == "" {
		return
	}
	sp := newSplitter(s.br, boundary)
	digest := p.Subtype == "digest"
	for !ps.full() && sp.next() {
		part := newStream(sp.part(), s.pos())
		child, _ := ps.entity(part, depth+1, digest)
		part.drain()
		p.Parts = append(p.Parts, child)
	}
}

// readHeader reads a header up to and including the empty line that ends it,
// or to the end of the region when there is none (then all of it is header).
// It keeps the fields that fit in maxHeader octets: a field that does not,
// continuation lines and all, is read past.
func readHeader(br *bufio.Reader) []byte {
	var header []byte
	field := 0       // where the current field starts in header
	atStart := true  // of a line
	dropped := false // the current field does not fit
	for {
		chunk, err := br.ReadSlice('\n')
		if atStart && len(chunk) > 0 {
			if isBlank(chunk) {
				return append(header, chunk...)
			}
			if chunk[0] != ' ' && chunk[0] != '\t' {
				field, dropped = len(header), false
			}
		}
		if !dropped {
			if len(header)+len(chunk) > maxHeader {
				header, dropped = header[:field], true
			} else {
				header = append(header, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			atStart = false // a long line: read on
			continue
		}
		if err != nil {
			return header
		}
		atStart = true
	}
}

func isBlank(line []byte) bool {
	return string(line) == "\n" || string(line) == "\r\n"
}

// describe fills p's media type and other descriptive fields from its header.
func describe(p *storagev1.BodyPart, header []byte, inDigest bool) {
	f := fields(header)
	typ, params, ok := parseValue(f["content-type"])
	if ok && strings.Contains(typ, "/") {
		p.Type, p.Subtype, _ = strings.Cut(typ, "/")
		p.Params = params
	} else if !ok && inDigest {
		p.Type, p.Subtype = "message", "rfc822"
	} else {
		// RFC 2045 5.2: absent or syntactically invalid means
		// text/plain; charset=us-ascii.
		p.Type, p.Subtype = "text", "plain"
		p.Params = []*storagev1.BodyParam{{Name: "charset", Value: "us-ascii"}}
	}
	p.Id = f["content-id"]
	p.Description = f["content-description"]
	p.Encoding = strings.ToLower(f["content-transfer-encoding"])
	p.Md5 = f["content-md5"]
	if disp, params, ok := parseValue(f["content-disposition"]); ok {
		p.Disposition, p.DispositionParams = disp, params
	}
	if v := f["content-language"]; v != "" {
		for _, lang := range strings.Split(v, ",") {
			p.Language = append(p.Language, strings.TrimSpace(lang))
		}
	}
	p.Location = f["content-location"]
	validUTF8(p)
}

// validUTF8 replaces the octets of raw 8-bit header text that are no UTF-8:
// protobuf strings must be UTF-8, or the tree cannot be stored at all.
func validUTF8(p *storagev1.BodyPart) {
	for _, s := range []*string{&p.Type, &p.Subtype, &p.Id, &p.Description, &p.Encoding, &p.Md5, &p.Disposition, &p.Location} {
		*s = strings.ToValidUTF8(*s, "\uFFFD")
	}
	for _, prm := range append(p.Params, p.DispositionParams...) {
		prm.Name = strings.ToValidUTF8(prm.Name, "\uFFFD")
		prm.Value = strings.ToValidUTF8(prm.Value, "\uFFFD")
	}
	for i, lang := range p.Language {
		p.Language[i] = strings.ToValidUTF8(lang, "\uFFFD")
	}
}

// fields returns the unfolded values of the Content-* fields of a header,
// keyed by lower-case name; the first occurrence counts. Lines that are no
// field (no colon, bad name) are skipped rather than ending the header:
// the header ends at its empty line (RFC 5322 2.1).
func fields(header []byte) map[string]string {
	f := map[string]string{}
	var name string // of the field being read; "" when skipping
	var value strings.Builder
	flush := func() {
		if _, seen := f[name]; name != "" && !seen {
			f[name] = value.String()
		}
		name = ""
		value.Reset()
	}
	for len(header) > 0 {
		end := bytes.IndexByte(header, '\n') + 1
		if end == 0 {
			end = len(header)
		}
		line := header[:end]
		header = header[end:]
		if isBlank(line) {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if name != "" {
				appendFolded(&value, line)
			}
			continue
		}
		flush()
		key, rest, ok := bytes.Cut(line, []byte(":"))
		key = bytes.Trim(key, " \t")
		if !ok || !validName(key) {
			continue
		}
		// Only the Content-* fields matter here (the envelope is parsed
		// elsewhere): skip the rest without copying them.
		if len(key) > 8 && strings.EqualFold(string(key[:8]), "content-") {
			name = strings.ToLower(string(key))
			appendFolded(&value, rest)
		}
	}
	flush()
	return f
}

// appendFolded appends one line of a folded value as go-message unfolds it:
// each line trimmed of blanks, empty ones left out, joined by one space.
func appendFolded(b *strings.Builder, line []byte) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	line = bytes.Trim(line, " \t")
	if len(line) == 0 {
		return
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	b.Write(line)
}

// validName reports whether name is a field name (RFC 5322 2.2: printable
// US-ASCII except colon).
func validName(name []byte) bool {
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return len(name) > 0
}
