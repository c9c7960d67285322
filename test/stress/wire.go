package stress

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// maxResponse bounds one response with its literals: the stress messages
// are at most a few hundred KiB.
const maxResponse = 8 << 20

// readResponse reads one response, literals included, exactly as it came
// over the wire (RFC 9051 section 4.3: a literal is "{n}" CRLF then n
// octets, and the response goes on after them).
func readResponse(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			buf = append(buf, line...)
			if len(buf) > maxResponse {
				return nil, errors.New("response too long")
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		buf = append(buf, line...)
		n, ok := trailingLiteral(buf)
		if !ok {
			return bytes.TrimRight(buf, "\r\n"), nil
		}
		if len(buf)+n > maxResponse {
			return nil, fmt.Errorf("literal of %d octets too long", n)
		}
		start := len(buf)
		buf = append(buf, make([]byte, n)...)
		if _, err := io.ReadFull(r, buf[start:]); err != nil {
			return nil, err
		}
	}
}

// trailingLiteral reports whether a line ends with "{n}" CRLF (or the
// binary form "~{n}").
func trailingLiteral(line []byte) (int, bool) {
	l := bytes.TrimRight(line, "\r\n")
	if len(l) < 3 || l[len(l)-1] != '}' {
		return 0, false
	}
	open := bytes.LastIndexByte(l, '{')
	if open < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(l[open+1 : len(l)-1]))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// token is one piece of a response: an atom (number, NIL, a fetch item
// name with its section), a string (quoted or literal), or a list.
type token struct {
	kind tokenKind
	s    string
	list []token
}

type tokenKind int

const (
	tokAtom tokenKind = iota
	tokString
	tokList
	tokNil
)

func (t token) String() string {
	switch t.kind {
	case tokList:
		parts := make([]string, len(t.list))
		for i, e := range t.list {
			parts[i] = e.String()
		}
		return "(" + strings.Join(parts, " ") + ")"
	case tokString:
		return strconv.Quote(t.s)
	case tokNil:
		return "NIL"
	}
	return t.s
}

// tokenize splits a response (after the parts the caller consumed) into
// tokens, following RFC 9051's formal syntax closely enough for what the
// stress client reads: FETCH data, SEARCH/ESEARCH and VANISHED.
func tokenize(b []byte) ([]token, error) {
	p := &tokenizer{b: b}
	toks, err := p.seq(false)
	if err != nil {
		return nil, err
	}
	if p.i != len(p.b) {
		return nil, fmt.Errorf("unbalanced ')' at %d", p.i)
	}
	return toks, nil
}

type tokenizer struct {
	b []byte
	i int
}

func (p *tokenizer) seq(inList bool) ([]token, error) {
	var out []token
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == ' ':
			p.i++
		case c == ')':
			if !inList {
				return out, nil
			}
			p.i++
			return out, nil
		case c == '(':
			p.i++
			l, err := p.seq(true)
			if err != nil {
				return nil, err
			}
			out = append(out, token{kind: tokList, list: l})
		case c == '"':
			s, err := p.quoted()
			if err != nil {
				return nil, err
			}
			out = append(out, token{kind: tokString, s: s})
		case c == '{' || (c == '~' && p.i+1 < len(p.b) && p.b[p.i+1] == '{'):
			s, err := p.literal()
			if err != nil {
				return nil, err
			}
			out = append(out, token{kind: tokString, s: s})
		default:
			a := p.atom()
			if a == "" {
				return nil, fmt.Errorf("unexpected %q at %d", c, p.i)
			}
			if strings.EqualFold(a, "NIL") {
				out = append(out, token{kind: tokNil})
			} else {
				out = append(out, token{kind: tokAtom, s: a})
			}
		}
	}
	if inList {
		return nil, errors.New("unclosed '('")
	}
	return out, nil
}

func (p *tokenizer) quoted() (string, error) {
	var b strings.Builder
	for p.i++; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; c {
		case '\\':
			p.i++
			if p.i < len(p.b) {
				b.WriteByte(p.b[p.i])
			}
		case '"':
			p.i++
			return b.String(), nil
		default:
			b.WriteByte(c)
		}
	}
	return "", errors.New("unclosed quoted string")
}

func (p *tokenizer) literal() (string, error) {
	if p.b[p.i] == '~' {
		p.i++
	}
	end := bytes.IndexByte(p.b[p.i:], '}')
	if end < 0 {
		return "", errors.New("unclosed literal size")
	}
	n, err := strconv.Atoi(string(p.b[p.i+1 : p.i+end]))
	if err != nil {
		return "", fmt.Errorf("literal size: %v", err)
	}
	p.i += end + 1
	if !bytes.HasPrefix(p.b[p.i:], []byte("\r\n")) || len(p.b)-p.i-2 < n {
		return "", errors.New("literal cut short")
	}
	p.i += 2
	s := string(p.b[p.i : p.i+n])
	p.i += n
	return s, nil
}

// atom reads an atom; a "[" in it runs to the matching "]" (a fetch
// item's section, which has spaces and parentheses), and a "<n>" origin
// after it is part of the atom too.
func (p *tokenizer) atom() string {
	start := p.i
	depth := 0
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '[':
			depth++
		case c == ']':
			if depth > 0 {
				depth--
			}
		case depth > 0:
		case c == ' ' || c == '(' || c == ')' || c == '"' || c == '{' || c < ' ':
			return string(p.b[start:p.i])
		}
		p.i++
	}
	return string(p.b[start:p.i])
}

// parseUIDSet parses a sequence set of UIDs ("1:3,7") into its members.
// Ranges are bounded: the stress mailboxes are small.
func parseUIDSet(s string) ([]uint32, error) {
	var out []uint32
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("set %q: %v", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 32); err != nil {
				return nil, fmt.Errorf("set %q: %v", s, err)
			}
		}
		if a > b {
			a, b = b, a
		}
		if b-a > 1<<20 {
			return nil, fmt.Errorf("set %q: range too large for the stress model", s)
		}
		for u := a; u <= b; u++ {
			out = append(out, uint32(u))
		}
	}
	return out, nil
}

// formatSet formats numbers as a sequence set (in the given order).
func formatSet(nums []uint32) string {
	var b strings.Builder
	for i, n := range nums {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(n), 10))
	}
	return b.String()
}
