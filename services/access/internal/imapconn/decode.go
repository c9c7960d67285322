// Package imapconn is the access tier's own IMAP server layer: the wire
// parser of client commands, the encoder of responses, the per-connection
// loop and the mailbox trackers. go-imap v2 provides the types commands are
// parsed into (its `imap` package); the grammar, literal handling and
// dispatch are ours, so that extensions and the rules below can be added.
//
// Rules of the parser (decode*.go):
//   - The formal syntax is RFC 9051 section 9 (IMAP4rev2), which accepts
//     RFC 3501's for IMAP4rev1 clients; a client error is a *SyntaxError
//     (answered BAD at once, never a server fault).
//   - A command line outside literals is bounded (MaxLine); literals read
//     into memory are bounded (MaxLiteral); a larger one is refused before
//     the client sends it (synchronizing literal: no continuation is sent)
//     or, if the client already sends it (LITERAL+), the connection ends
//     after the refusal: its bytes are never read as commands.
//   - APPEND's message literals are not read into memory: the handler gets
//     each as a reader and decides first whether to accept it.
package imapconn

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
)

// SyntaxError is a client error: the command is answered BAD.
type SyntaxError struct{ Msg string }

func (e *SyntaxError) Error() string { return e.Msg }

func syntaxErr(format string, args ...any) error {
	return &SyntaxError{Msg: fmt.Sprintf(format, args...)}
}

// LiteralTooBigError refuses a literal over a limit. NonSync tells whether
// the client is already sending it: then the connection must end.
type LiteralTooBigError struct {
	Size, Limit int64
	NonSync     bool
}

func (e *LiteralTooBigError) Error() string {
	return fmt.Sprintf("literal of %d bytes is over the limit of %d", e.Size, e.Limit)
}

// ErrLineTooLong ends a command whose line is over MaxLine.
var ErrLineTooLong = &SyntaxError{Msg: "command line too long"}

// Decoder reads client commands from a connection.
type Decoder struct {
	r *bufio.Reader
	// StatusMailboxID: the last STATUS (or LIST-STATUS) item list asked
	// for MAILBOXID (RFC 8474).
	StatusMailboxID bool
	// Continue sends a continuation request before the client sends a
	// synchronizing literal the server accepts.
	Continue func() error
	// MaxLine bounds a command's bytes outside literals.
	MaxLine int
	// MaxLiteral bounds a literal read into memory (not APPEND's message).
	MaxLiteral int64
	// LiteralPlus: LITERAL+ is advertised; otherwise LITERAL- rules apply
	// (non-synchronizing literals of at most 4096 bytes, RFC 7888 section 5).
	LiteralPlus bool
	// UTF8: mailbox names travel as UTF-8 (IMAP4rev2 or UTF8=ACCEPT), not
	// modified UTF-7.
	UTF8 bool

	n     int // bytes of the current command outside literals
	depth int // nesting of the search key being parsed
}

// NewDecoder returns a decoder of r.
func NewDecoder(r *bufio.Reader) *Decoder {
	return &Decoder{r: r, MaxLine: 64 << 10, MaxLiteral: 64 << 10, LiteralPlus: true}
}

// Begin starts a new command (resets the line budget).
func (d *Decoder) Begin() { d.n, d.depth = 0, 0 }

func (d *Decoder) readByte() (byte, error) {
	if d.n >= d.MaxLine {
		return 0, ErrLineTooLong
	}
	b, err := d.r.ReadByte()
	if err != nil {
		return 0, err
	}
	d.n++
	return b, nil
}

func (d *Decoder) unread() {
	d.r.UnreadByte()
	d.n--
}

// peek returns the next byte without consuming it (0 at an error).
func (d *Decoder) peek() byte {
	b, err := d.r.Peek(1)
	if err != nil {
		return 0
	}
	return b[0]
}

// accept consumes b if it is next.
func (d *Decoder) accept(b byte) bool {
	if d.peek() == b {
		d.readByte()
		return true
	}
	return false
}

// expect consumes b or fails.
func (d *Decoder) expect(b byte, what string) error {
	c, err := d.readByte()
	if err != nil {
		return err
	}
	if c != b {
		d.unread()
		return syntaxErr("expected %s", what)
	}
	return nil
}

// SP consumes one space.
func (d *Decoder) SP() error { return d.expect(' ', "a space") }

// CRLF consumes the end of the line (a bare LF is tolerated).
func (d *Decoder) CRLF() error {
	b, err := d.readByte()
	if err != nil {
		return err
	}
	if b == '\r' {
		b, err = d.readByte()
		if err != nil {
			return err
		}
	}
	if b != '\n' {
		d.unread()
		return syntaxErr("expected the end of the command")
	}
	return nil
}

// AtEOL reports whether the line ends next.
func (d *Decoder) AtEOL() bool { c := d.peek(); return c == '\r' || c == '\n' }

// isAtomChar: ATOM-CHAR, any CHAR except atom-specials (RFC 9051 section 9).
func isAtomChar(c byte) bool {
	if c <= 0x1f || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', ' ', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

// isAStringChar: ASTRING-CHAR = ATOM-CHAR / resp-specials ("]").
func isAStringChar(c byte) bool { return isAtomChar(c) || c == ']' }

// isListChar: list-char = ATOM-CHAR / list-wildcards / resp-specials.
func isListChar(c byte) bool { return isAStringChar(c) || c == '%' || c == '*' }

// token reads 1*c where ok(c).
func (d *Decoder) token(ok func(byte) bool, what string) (string, error) {
	var sb strings.Builder
	for {
		c, err := d.readByte()
		if err != nil {
			return "", err
		}
		if !ok(c) {
			d.unread()
			break
		}
		sb.WriteByte(c)
	}
	if sb.Len() == 0 {
		return "", syntaxErr("expected %s", what)
	}
	return sb.String(), nil
}

// Atom reads an atom.
func (d *Decoder) Atom() (string, error) { return d.token(isAtomChar, "an atom") }

// Tag reads a command tag: 1*<any ASTRING-CHAR except "+">.
func (d *Decoder) Tag() (string, error) {
	return d.token(func(c byte) bool { return isAStringChar(c) && c != '+' }, "a tag")
}

// Number reads a number (uint32).
func (d *Decoder) Number() (uint32, error) {
	s, err := d.token(isDigit, "a number")
	if err != nil {
		return 0, err
	}
	n, perr := strconv.ParseUint(s, 10, 32)
	if perr != nil {
		return 0, syntaxErr("number out of range")
	}
	return uint32(n), nil
}

// Number64 reads a number64 (RFC 9051: up to 2^63-1).
func (d *Decoder) Number64() (int64, error) {
	s, err := d.token(isDigit, "a number")
	if err != nil {
		return 0, err
	}
	n, perr := strconv.ParseInt(s, 10, 64)
	if perr != nil {
		return 0, syntaxErr("number out of range")
	}
	return n, nil
}

// NZNumber reads a non-zero number.
func (d *Decoder) NZNumber() (uint32, error) {
	n, err := d.Number()
	if err == nil && n == 0 {
		return 0, syntaxErr("expected a non-zero number")
	}
	return n, err
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// Quoted reads a quoted string (the opening quote already next).
func (d *Decoder) quoted() (string, error) {
	if err := d.expect('"', "a quoted string"); err != nil {
		return "", err
	}
	var sb strings.Builder
	for {
		c, err := d.readByte()
		if err != nil {
			return "", err
		}
		switch {
		case c == '"':
			return sb.String(), nil
		case c == '\\':
			e, err := d.readByte()
			if err != nil {
				return "", err
			}
			if e != '"' && e != '\\' {
				return "", syntaxErr("only \\\" and \\\\ may be escaped in a quoted string")
			}
			sb.WriteByte(e)
		case c == '\r' || c == '\n' || c == 0:
			d.unread()
			return "", syntaxErr("unterminated quoted string")
		default:
			// 8-bit bytes: RFC 3501 quoted strings are 7-bit, IMAP4rev2
			// and UTF8=ACCEPT allow UTF-8; names are checked where used.
			sb.WriteByte(c)
		}
	}
}

// literalHeader reads "{" number64 ["+"] "}" CRLF, or with binary "~{...}".
func (d *Decoder) literalHeader(binary bool) (size int64, nonSync bool, err error) {
	if binary {
		if err := d.expect('~', "a literal8"); err != nil {
			return 0, false, err
		}
	}
	if err := d.expect('{', "a literal"); err != nil {
		return 0, false, err
	}
	if size, err = d.Number64(); err != nil {
		return 0, false, err
	}
	nonSync = d.accept('+')
	if err := d.expect('}', "}"); err != nil {
		return 0, false, err
	}
	if err := d.CRLF(); err != nil {
		return 0, false, err
	}
	return size, nonSync, nil
}

// acceptLiteral decides on a literal whose header was read: a
// synchronizing one gets its continuation request.
func (d *Decoder) acceptLiteral(size, limit int64, nonSync bool) error {
	if nonSync && !d.LiteralPlus && size > 4096 {
		// LITERAL- (RFC 7888 section 5): the client is sending it anyway.
		return &LiteralTooBigError{Size: size, Limit: 4096, NonSync: true}
	}
	if limit >= 0 && size > limit {
		return &LiteralTooBigError{Size: size, Limit: limit, NonSync: nonSync}
	}
	if !nonSync && d.Continue != nil {
		return d.Continue()
	}
	return nil
}

// literal reads a literal into memory (bounded by MaxLiteral).
func (d *Decoder) literal() (string, error) {
	size, nonSync, err := d.literalHeader(false)
	if err != nil {
		return "", err
	}
	if err := d.acceptLiteral(size, d.MaxLiteral, nonSync); err != nil {
		return "", err
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(d.r, buf); err != nil {
		return "", err
	}
	return string(buf), nil
}

// String reads a string: quoted or literal.
func (d *Decoder) String() (string, error) {
	switch d.peek() {
	case '"':
		return d.quoted()
	case '{':
		return d.literal()
	}
	return "", syntaxErr("expected a string")
}

// AString reads an astring: 1*ASTRING-CHAR or a string.
func (d *Decoder) AString() (string, error) {
	switch d.peek() {
	case '"', '{':
		return d.String()
	}
	return d.token(isAStringChar, "a string")
}

// NString reads a string or NIL.
func (d *Decoder) NString() (s string, isNil bool, err error) {
	if c := d.peek(); c == 'N' || c == 'n' {
		a, err := d.Atom()
		if err != nil {
			return "", false, err
		}
		if !strings.EqualFold(a, "NIL") {
			return "", false, syntaxErr("expected a string or NIL")
		}
		return "", true, nil
	}
	s, err = d.String()
	return s, false, err
}

// Mailbox reads a mailbox name and returns it in UTF-8 ("INBOX" in any case
// is INBOX).
func (d *Decoder) Mailbox() (string, error) {
	raw, err := d.AString()
	if err != nil {
		return "", err
	}
	return d.mailboxName(raw)
}

func (d *Decoder) mailboxName(raw string) (string, error) {
	if strings.EqualFold(raw, "INBOX") {
		return "INBOX", nil
	}
	if d.UTF8 {
		if !validUTF8(raw) {
			return "", syntaxErr("mailbox name is not valid UTF-8")
		}
		return raw, nil
	}
	name, err := DecodeMailboxName(raw)
	if err != nil {
		return "", syntaxErr("mailbox name is not valid modified UTF-7: %v", err)
	}
	return name, nil
}

// ListMailbox reads a LIST pattern: 1*list-char or a string.
func (d *Decoder) ListMailbox() (string, error) {
	var raw string
	var err error
	switch d.peek() {
	case '"', '{':
		raw, err = d.String()
	default:
		raw, err = d.token(isListChar, "a mailbox pattern")
	}
	if err != nil {
		return "", err
	}
	if d.UTF8 {
		if !validUTF8(raw) {
			return "", syntaxErr("pattern is not valid UTF-8")
		}
		return raw, nil
	}
	name, derr := DecodeMailboxName(raw)
	if derr != nil {
		return "", syntaxErr("pattern is not valid modified UTF-7: %v", derr)
	}
	return name, nil
}

// ParenList reads "(" item *(SP item) ")" (or "()" when empty is allowed).
func (d *Decoder) ParenList(allowEmpty bool, item func() error) error {
	if err := d.expect('(', "("); err != nil {
		return err
	}
	if d.accept(')') {
		if !allowEmpty {
			return syntaxErr("empty list")
		}
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		if d.accept(')') {
			return nil
		}
		if err := d.SP(); err != nil {
			return syntaxErr("expected a space or )")
		}
	}
}

// Flag reads a flag: "\" atom (system or extension) or a keyword atom.
func (d *Decoder) Flag() (imap.Flag, error) {
	if d.accept('\\') {
		a, err := d.Atom()
		if err != nil {
			return "", err
		}
		return canonicalFlag("\\" + a), nil
	}
	a, err := d.Atom()
	return imap.Flag(a), err
}

// canonicalFlag spells system flags as RFC 9051 does (they are
// case-insensitive).
func canonicalFlag(f string) imap.Flag {
	for _, sys := range []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft, "\\Recent"} {
		if strings.EqualFold(f, string(sys)) {
			return sys
		}
	}
	return imap.Flag(f)
}

// FlagList reads "(" [flag *(SP flag)] ")".
func (d *Decoder) FlagList() ([]imap.Flag, error) {
	var flags []imap.Flag
	err := d.ParenList(true, func() error {
		f, err := d.Flag()
		flags = append(flags, f)
		return err
	})
	return flags, err
}

var months = []string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// Date reads a date (SEARCH): date-text or DQUOTE date-text DQUOTE,
// date-text = date-day "-" date-month "-" date-year.
func (d *Decoder) Date() (time.Time, error) {
	var s string
	var err error
	if d.peek() == '"' {
		s, err = d.quoted()
	} else {
		s, err = d.token(func(c byte) bool { return isAtomChar(c) }, "a date")
	}
	if err != nil {
		return time.Time{}, err
	}
	parts := strings.Split(s, "-")
	if len(parts) != 3 || len(parts[0]) < 1 || len(parts[0]) > 2 || len(parts[2]) != 4 {
		return time.Time{}, syntaxErr("expected a date like 1-Feb-1994")
	}
	day, err1 := strconv.Atoi(parts[0])
	year, err2 := strconv.Atoi(parts[2])
	month := monthOf(parts[1])
	if err1 != nil || err2 != nil || month == 0 || day < 1 || day > 31 {
		return time.Time{}, syntaxErr("expected a date like 1-Feb-1994")
	}
	return time.Date(year, month, day, 0, 0, 0, 0, time.UTC), nil
}

func monthOf(s string) time.Month {
	for i, m := range months {
		if strings.EqualFold(s, m) {
			return time.Month(i + 1)
		}
	}
	return 0
}

// DateTime reads a date-time: DQUOTE date-day-fixed "-" date-month "-"
// date-year SP time SP zone DQUOTE.
func (d *Decoder) DateTime() (time.Time, error) {
	if d.peek() != '"' {
		return time.Time{}, syntaxErr("expected a date-time")
	}
	s, err := d.quoted()
	if err != nil {
		return time.Time{}, err
	}
	t, perr := time.Parse("_2-Jan-2006 15:04:05 -0700", s)
	if perr != nil {
		return time.Time{}, syntaxErr("expected a date-time like \"17-Jul-1996 02:44:25 -0700\"")
	}
	return t, nil
}

// NumSet reads a sequence-set (or "$", the saved search result, RFC 5182).
func (d *Decoder) NumSet(uid bool) (imap.NumSet, error) {
	if d.accept('$') {
		return imap.SearchRes(), nil
	}
	var seq imap.SeqSet
	var uids imap.UIDSet
	for {
		lo, err := d.seqNumber()
		if err != nil {
			return nil, err
		}
		hi := lo
		if d.accept(':') {
			if hi, err = d.seqNumber(); err != nil {
				return nil, err
			}
		}
		if uid {
			uids.AddRange(imap.UID(lo), imap.UID(hi))
		} else {
			seq.AddRange(lo, hi)
		}
		if !d.accept(',') {
			break
		}
	}
	if uid {
		return uids, nil
	}
	return seq, nil
}

// seqNumber reads nz-number or "*" (0 stands for "*").
func (d *Decoder) seqNumber() (uint32, error) {
	if d.accept('*') {
		return 0, nil
	}
	return d.NZNumber()
}

// DiscardCommand skips the rest of a command after an error, honouring
// literals: a line ending in a synchronizing literal ends the command (the
// client sends no literal without our continuation), one ending in a
// non-synchronizing literal has its bytes skipped (at most maxSkip, else
// an error: the connection must end).
func (d *Decoder) DiscardCommand(maxSkip int64) error {
	var tail []byte // the last bytes of the line, to spot "{n}" / "{n+}"
	for {
		c, err := d.r.ReadByte()
		if err != nil {
			return err
		}
		if c != '\n' {
			if len(tail) == 32 {
				tail = tail[1:]
			}
			tail = append(tail, c)
			continue
		}
		line := strings.TrimSuffix(string(tail), "\r")
		tail = tail[:0]
		size, nonSync, ok := literalAtEnd(line)
		if !ok || !nonSync {
			return nil
		}
		if size > maxSkip {
			return &LiteralTooBigError{Size: size, Limit: maxSkip, NonSync: true}
		}
		if _, err := io.CopyN(io.Discard, d.r, size); err != nil {
			return err
		}
	}
}

// literalAtEnd reports a literal announcement at the end of a line.
func literalAtEnd(line string) (size int64, nonSync, ok bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false, false
	}
	open := strings.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false, false
	}
	num := line[open+1 : len(line)-1]
	num, nonSync = strings.CutSuffix(num, "+")
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, false, false
	}
	return n, nonSync, true
}

// IsClientError reports whether err is the client's fault (answered BAD or
// NO), as opposed to a connection or server fault.
func IsClientError(err error) bool {
	var se *SyntaxError
	var tb *LiteralTooBigError
	return errors.As(err, &se) || errors.As(err, &tb)
}

func validUTF8(s string) bool { return utf8.ValidString(s) }

var (
	eof              = io.EOF
	errUnexpectedEOF = io.ErrUnexpectedEOF
)

// decodeBase64 decodes a SASL response (standard base64, RFC 4648).
func decodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, syntaxErr("invalid base64")
	}
	return b, nil
}
