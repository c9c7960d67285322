package mimetree

// Finding parts is adapted from go-message's textproto multipart reader
// (itself Go's mime/multipart; Copyright 2010 The Go Authors, BSD license),
// because go-imap's BODYSTRUCTURE is computed with it: where a part ends,
// and so its size and lines, must be decided the same way, quirks included
// (bare LF after a bare-LF first boundary, a missing closing boundary ends
// the last part at the end of input minus a trailing line break). Unlike
// it, this one reads its parent's buffer in place, keeps no part header,
// and reads past long preamble lines instead of giving up.

import (
	"bufio"
	"bytes"
	"io"
)

type multipartReader struct {
	br        *bufio.Reader
	partsRead int

	nl               []byte // "\r\n" or "\n" (set after seeing first boundary line)
	nlDashBoundary   []byte // nl + "--boundary"
	dashBoundaryDash []byte // "--boundary--"
	dashBoundary     []byte // "--boundary"
}

func newMultipartReader(br *bufio.Reader, boundary string) *multipartReader {
	b := []byte("\r\n--" + boundary + "--")
	return &multipartReader{
		br:               br,
		nl:               b[:2],
		nlDashBoundary:   b[:len(b)-2],
		dashBoundaryDash: b[2:],
		dashBoundary:     b[2 : len(b)-2],
	}
}

// nextPart reads up to and including the next boundary delimiter line and
// reports whether a part follows it. The previous part must have been read
// to its end.
func (mr *multipartReader) nextPart() bool {
	expectNewPart := false
	for {
		line, err := mr.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// Longer than any delimiter line: no boundary. Skip it in the
			// preamble; anywhere else it ends the parts, as a wrong line does.
			if mr.partsRead > 0 || !skipLine(mr.br) {
				return false
			}
			continue
		}
		if err != nil {
			return false // the end, with or without the closing delimiter
		}
		if mr.isBoundaryDelimiterLine(line) {
			mr.partsRead++
			return true
		}
		if mr.isFinalBoundary(line) || expectNewPart {
			return false
		}
		if mr.partsRead == 0 {
			continue // preamble
		}
		// The line break between the previous part's body and the
		// delimiter that must follow it.
		if bytes.Equal(line, mr.nl) {
			expectNewPart = true
			continue
		}
		return false
	}
}

// skipLine reads past the rest of a line and reports whether a line feed ended it.
func skipLine(br *bufio.Reader) bool {
	for {
		_, err := br.ReadSlice('\n')
		if err != bufio.ErrBufferFull {
			return err == nil
		}
	}
}

// isFinalBoundary reports whether line is the final boundary line
// indicating that all parts are over.
// It matches `^--boundary--[ \t]*(\r\n)?$`
func (mr *multipartReader) isFinalBoundary(line []byte) bool {
	if !bytes.HasPrefix(line, mr.dashBoundaryDash) {
		return false
	}
	rest := skipLWSPChar(line[len(mr.dashBoundaryDash):])
	return len(rest) == 0 || bytes.Equal(rest, mr.nl)
}

func (mr *multipartReader) isBoundaryDelimiterLine(line []byte) bool {
	// RFC 2046 5.1: "--" boundary, optional linear whitespace, CRLF.
	if !bytes.HasPrefix(line, mr.dashBoundary) {
		return false
	}
	rest := skipLWSPChar(line[len(mr.dashBoundary):])
	// A first delimiter ending in a bare LF switches to bare LF mode: a
	// violation of the spec, but it occurs in practice.
	if mr.partsRead == 0 && len(rest) == 1 && rest[0] == '\n' {
		mr.nl = mr.nl[1:]
		mr.nlDashBoundary = mr.nlDashBoundary[1:]
	}
	return bytes.Equal(rest, mr.nl)
}

// skipLWSPChar returns b with leading spaces and tabs removed.
func skipLWSPChar(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// partReader reads one part, header and body, from its multipart's buffer
// and ends before the line break that precedes the next delimiter.
type partReader struct {
	mr      *multipartReader
	n       int   // known data bytes waiting in mr.br
	total   int64 // total data bytes read already
	err     error // error to return when n == 0
	readErr error // read error observed from mr.br
}

func (p *partReader) Read(d []byte) (int, error) {
	br := p.mr.br
	// Read into buffer until we identify some data to return,
	// or we find a reason to stop (boundary or read error).
	for p.n == 0 && p.err == nil {
		peek, _ := br.Peek(br.Buffered())
		p.n, p.err = scanUntilBoundary(peek, p.mr.dashBoundary, p.mr.nlDashBoundary, p.total, p.readErr)
		if p.n == 0 && p.err == nil {
			// Force buffered I/O to read more into buffer.
			_, p.readErr = br.Peek(len(peek) + 1)
			if p.readErr == io.EOF {
				p.readErr = io.ErrUnexpectedEOF
			}
		}
	}
	if p.n == 0 {
		if p.err == io.ErrUnexpectedEOF {
			return 0, io.EOF // the input ended without a delimiter: the part ends too
		}
		return 0, p.err
	}
	n, _ := br.Read(d[:min(len(d), p.n)])
	p.total += int64(n)
	p.n -= n
	return n, nil
}

// scanUntilBoundary scans buf to identify how much of it can be safely
// returned as part of the Part body.
// dashBoundary is "--boundary".
// nlDashBoundary is "\r\n--boundary" or "\n--boundary", depending on what mode we are in.
// The comments below (and the name) assume "\n--boundary", but either is accepted.
// total is the number of bytes read out so far. If total == 0, then a leading "--boundary" is recognized.
// readErr is the read error, if any, that followed reading the bytes in buf.
// scanUntilBoundary returns the number of data bytes from buf that can be
// returned as part of the Part body and also the error to return (if any)
// once those data bytes are done.
func scanUntilBoundary(buf, dashBoundary, nlDashBoundary []byte, total int64, readErr error) (int, error) {
	if total == 0 {
		// At beginning of body, allow dashBoundary.
		if bytes.HasPrefix(buf, dashBoundary) {
			switch matchAfterPrefix(buf, dashBoundary, readErr) {
			case -1:
				return len(dashBoundary), nil
			case 0:
				return 0, nil
			case +1:
				return 0, io.EOF
			}
		}
		if bytes.HasPrefix(dashBoundary, buf) {
			return 0, readErr
		}
	}

	// Search for "\n--boundary".
	if i := bytes.Index(buf, nlDashBoundary); i >= 0 {
		switch matchAfterPrefix(buf[i:], nlDashBoundary, readErr) {
		case -1:
			return i + len(nlDashBoundary), nil
		case 0:
			return i, nil
		case +1:
			return i, io.EOF
		}
	}
	if bytes.HasPrefix(nlDashBoundary, buf) {
		return 0, readErr
	}

	// Otherwise, anything up to the final \n is not part of the boundary
	// and so must be part of the body.
	// Also if the section from the final \n onward is not a prefix of the boundary,
	// it too must be part of the body.
	i := bytes.LastIndexByte(buf, nlDashBoundary[0])
	if i >= 0 && bytes.HasPrefix(nlDashBoundary, buf[i:]) {
		return i, nil
	}
	return len(buf), readErr
}

// matchAfterPrefix checks whether buf should be considered to match the boundary.
// The prefix is "--boundary" or "\r\n--boundary" or "\n--boundary",
// and the caller has verified already that bytes.HasPrefix(buf, prefix) is true.
//
// matchAfterPrefix returns +1 if the buffer does match the boundary,
// meaning the prefix is followed by a dash, space, tab, cr, nl, or end of input.
// It returns -1 if the buffer definitely does NOT match the boundary,
// meaning the prefix is followed by some other character.
// For example, "--foobar" does not match "--foo".
// It returns 0 more input needs to be read to make the decision,
// meaning that len(buf) == len(prefix) and readErr == nil.
func matchAfterPrefix(buf, prefix []byte, readErr error) int {
	if len(buf) == len(prefix) {
		if readErr != nil {
			return +1
		}
		return 0
	}
	c := buf[len(prefix)]
	if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '-' {
		return +1
	}
	return -1
}
