package mimetree

// Splitting a multipart body into its parts.
//
// RFC 2046 5.1.1: a part ends at a delimiter, which is CRLF, "--" and the
// boundary. The CRLF belongs to the delimiter, not to the part before it (a
// part ending in a line break has an empty line before the delimiter). The
// rest of the delimiter line is transport padding (spaces and tabs) and its
// own CRLF, and the part that follows begins on the next line. The close
// delimiter has "--" after the boundary. What precedes the first delimiter
// is the preamble, what follows the close delimiter the epilogue: neither
// is a part.
//
// go-imap computed BODYSTRUCTURE with go-message's multipart reader, whose
// leniency decides where a part ends, and so its size and lines. Clients
// have been told those, so this splitter deviates from the RFC as it does:
//
//   - A first delimiter line that ends in a bare LF makes the line break
//     that starts every later delimiter a bare LF too.
//   - "--" boundary ends a part when followed by "-", a space, a tab, CR or
//     LF. The rest of its line is judged when the next part is sought:
//     anything but a delimiter line (the close delimiter included) ends the
//     parts, and the remaining text is epilogue.
//   - A part that begins with "--" boundary is empty: that line is the next
//     delimiter line, without a line break before it.
//   - When the input ends without a delimiter, the last part ends there,
//     less a trailing line break (or any other start of a delimiter).
//   - A preamble line longer than the read buffer cannot be a delimiter
//     line and is read past; elsewhere, such a line ends the parts.

import (
	"bufio"
	"bytes"
	"io"
)

// splitter finds the parts of one multipart body in the reader of the
// entity around it, reading that reader's buffer in place: memory does not
// grow with a part, however long.
type splitter struct {
	in      *bufio.Reader
	delim   []byte // what ends a part: CRLF "--" boundary, or LF "--" boundary
	dash    []byte // "--" boundary: how a delimiter line begins
	started bool   // past the preamble
	cur     *section
}

func newSplitter(in *bufio.Reader, boundary string) *splitter {
	delim := []byte("\r\n--" + boundary)
	return &splitter{in: in, delim: delim, dash: delim[2:]}
}

// lineBreak is the line break that begins a delimiter.
func (sp *splitter) lineBreak() []byte { return sp.delim[:len(sp.delim)-len(sp.dash)] }

// next moves past the next delimiter line and reports whether a part
// follows it, to be read from part. What is left of the current part is
// skipped. After false, what remains in the reader is epilogue (or
// preamble, when there were no parts).
func (sp *splitter) next() bool {
	if sp.cur != nil {
		sp.cur.skip()
		sp.cur = nil
	}
	if !sp.started {
		sp.started = sp.skipPreamble()
		return sp.started
	}
	// The current part stopped at its delimiter: the line break that
	// begins it, unless the part was empty and began with "--" boundary,
	// then the rest of the delimiter line.
	line, ok := sp.readLine()
	if ok && bytes.Equal(line, sp.lineBreak()) {
		line, ok = sp.readLine()
	}
	return ok && sp.isDelimiterLine(line, sp.lineBreak())
}

// skipPreamble reads up to and including the first delimiter line, and
// reports whether there was one before the close delimiter or the end.
func (sp *splitter) skipPreamble() bool {
	for {
		line, err := sp.in.ReadSlice('\n')
		switch {
		case err == bufio.ErrBufferFull:
			if !sp.skipLongLine() {
				return false
			}
		case err != nil:
			return false
		case sp.isDelimiterLine(line, crlfBreak):
			return true
		case sp.isDelimiterLine(line, crlfBreak[1:]):
			sp.delim = sp.delim[1:]
			return true
		case sp.isCloseLine(line):
			return false
		}
	}
}

var crlfBreak = []byte("\r\n")

// readLine returns the next line, line feed included, if one fits in the
// buffer and ends in a line feed.
func (sp *splitter) readLine() ([]byte, bool) {
	line, err := sp.in.ReadSlice('\n')
	return line, err == nil
}

// skipLongLine reads past the rest of a line that filled the buffer, and
// reports whether a line feed ended it.
func (sp *splitter) skipLongLine() bool {
	for {
		if _, err := sp.in.ReadSlice('\n'); err != bufio.ErrBufferFull {
			return err == nil
		}
	}
}

// isDelimiterLine reports whether line is "--" boundary, padding and the
// line break brk.
func (sp *splitter) isDelimiterLine(line, brk []byte) bool {
	rest, ok := bytes.CutPrefix(line, sp.dash)
	return ok && bytes.Equal(trimPadding(rest), brk)
}

// isCloseLine reports whether line is "--" boundary "--", padding and CRLF.
func (sp *splitter) isCloseLine(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, sp.dash)
	if !ok || !bytes.HasPrefix(rest, []byte("--")) {
		return false
	}
	return bytes.Equal(trimPadding(rest[2:]), crlfBreak)
}

// trimPadding drops the spaces and tabs that b starts with.
func trimPadding(b []byte) []byte {
	return bytes.TrimLeft(b, " \t")
}

// part returns a reader of the part that next has just found.
func (sp *splitter) part() io.Reader {
	sp.cur = &section{sp: sp}
	return sp.cur
}

// section reads one part, header and body, out of its splitter's reader.
// It returns io.EOF at the part's end, which also stands for the end of the
// input or a read error there (the message's reader keeps that error).
type section struct {
	sp     *splitter
	ready  int  // octets at the front of the buffer known to be the part's
	last   bool // no octets of the part follow those
	read   bool // some octets have been returned
	closed bool // no more input can be buffered: decide on what there is
}

func (s *section) Read(p []byte) (int, error) {
	if !s.settle() {
		return 0, io.EOF
	}
	n, _ := s.sp.in.Read(p[:min(len(p), s.ready)])
	s.ready -= n
	s.read = true
	return n, nil
}

// skip reads past the rest of the part.
func (s *section) skip() {
	for s.settle() {
		s.sp.in.Discard(s.ready)
		s.ready = 0
		s.read = true
	}
}

// settle makes s.ready positive, buffering more input as needed to tell
// where the part ends, or reports false at its end.
func (s *section) settle() bool {
	in := s.sp.in
	for s.ready == 0 && !s.last {
		w, _ := in.Peek(in.Buffered())
		s.ready, s.last = s.sp.claim(w, !s.read, s.closed)
		if s.ready == 0 && !s.last {
			// Too little is buffered to tell. Without more to come (the
			// end, a read error, or a full buffer) the next claim decides.
			if _, err := in.Peek(len(w) + 1); err != nil {
				s.closed = true
			}
		}
	}
	return s.ready > 0
}

// claim tells how much of w, the input buffered at the reading position
// of a part, is the part's: the first n octets are, and last reports
// whether the part ends after them. (0, false) means that w is too short
// to tell. fresh is true at the start of the part, closed when no input
// follows w.
func (sp *splitter) claim(w []byte, fresh, closed bool) (n int, last bool) {
	if fresh {
		switch lookAt(w, sp.dash, closed) {
		case found:
			return 0, true
		case unsure:
			return 0, false
		}
	}
	for i := 0; ; i++ {
		k := bytes.Index(w[i:], sp.delim)
		if k < 0 {
			break
		}
		i += k
		if v := lookAt(w[i:], sp.delim, closed); v != absent {
			return i, v == found
		}
	}
	// No whole delimiter in w, but its last octets may begin one.
	for i := max(0, len(w)-len(sp.delim)+1); i < len(w); i++ {
		if v := lookAt(w[i:], sp.delim, closed); v != absent {
			return i, v == found
		}
	}
	return len(w), closed
}

type sighting int

const (
	absent sighting = iota
	found
	unsure // more input is needed to tell
)

// lookAt tells whether w begins with the delimiter d: d followed by a
// character that may follow a boundary on its line ("-" of the close
// delimiter, padding, or a line break). When w ends within d, or right
// after it, it is unsure; unless closed, then the input ends there and the
// delimiter is deemed found (the part ends before it).
func lookAt(w, d []byte, closed bool) sighting {
	if len(w) <= len(d) {
		switch {
		case !bytes.HasPrefix(d, w):
			return absent
		case closed:
			return found
		}
		return unsure
	}
	if !bytes.HasPrefix(w, d) {
		return absent
	}
	switch w[len(d)] {
	case '-', ' ', '\t', '\r', '\n':
		return found
	}
	return absent
}
