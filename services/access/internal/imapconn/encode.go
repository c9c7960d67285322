package imapconn

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
)

// maxQuotedLen is the longest string String writes as a quoted string;
// longer ones go out as literals.
const maxQuotedLen = 1000

// Encoder writes IMAP server responses (RFC 9051 / RFC 3501 formal syntax)
// to a buffered writer.
//
// Errors are sticky: after the first error (a write error, a streamed
// literal of the wrong size, an invalid argument) every method is a no-op
// and Err returns that error. The connection is then in an unknown state
// and must be closed by the caller.
//
// An Encoder is used by one goroutine at a time; it takes no locks.
type Encoder struct {
	// UTF8 is set once UTF8=ACCEPT is enabled or the session is
	// IMAP4rev2: quoted strings may then carry UTF-8 and mailbox names
	// are sent as UTF-8 instead of modified UTF-7.
	UTF8 bool
	// Rev2 is set when the session uses IMAP4rev2.
	Rev2 bool
	// SessionFlags, if set, adds the session's own flags of a message
	// (\Recent) to the flags of every FETCH response that names its UID.
	SessionFlags func(uid imap.UID, flags []imap.Flag) []imap.Flag

	w   *bufio.Writer
	err error
	lit *literalWriter // a streamed literal not yet complete
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w *bufio.Writer) *Encoder {
	return &Encoder{w: w}
}

// Err returns the first error the encoder met, if any.
func (e *Encoder) Err() error { return e.err }

// Flush flushes the underlying writer and returns the sticky error.
func (e *Encoder) Flush() error {
	if e.err != nil {
		return e.err
	}
	if e.lit != nil {
		e.setErr(errors.New("imapconn: flush inside an unfinished literal"))
		return e.err
	}
	if err := e.w.Flush(); err != nil {
		e.setErr(err)
	}
	return e.err
}

func (e *Encoder) setErr(err error) {
	if e.err == nil {
		e.err = err
	}
}

// ok reports whether the encoder may write: no error so far and no
// streamed literal in progress.
func (e *Encoder) ok() bool {
	if e.err != nil {
		return false
	}
	if e.lit != nil {
		e.setErr(errors.New("imapconn: response written inside an unfinished literal"))
		return false
	}
	return true
}

func (e *Encoder) writeString(s string) {
	if !e.ok() {
		return
	}
	if _, err := e.w.WriteString(s); err != nil {
		e.setErr(err)
	}
}

func (e *Encoder) writeByte(b byte) {
	if !e.ok() {
		return
	}
	if err := e.w.WriteByte(b); err != nil {
		e.setErr(err)
	}
}

// SP writes a space.
func (e *Encoder) SP() *Encoder { e.writeByte(' '); return e }

// CRLF ends a response line.
func (e *Encoder) CRLF() *Encoder { e.writeString("\r\n"); return e }

// Atom writes s verbatim; the caller ensures it is a valid atom (or any
// other token written as is, such as a response name).
func (e *Encoder) Atom(s string) *Encoder { e.writeString(s); return e }

// Special writes one special character such as '(' or '['.
func (e *Encoder) Special(b byte) *Encoder { e.writeByte(b); return e }

// Number writes a number (RFC 9051 number / nz-number).
func (e *Encoder) Number(n uint32) *Encoder { return e.Number64(uint64(n)) }

// Number64 writes a 64-bit number (number64, mod-sequence-value).
func (e *Encoder) Number64(n uint64) *Encoder {
	if !e.ok() {
		return e
	}
	var buf [20]byte
	if _, err := e.w.Write(strconv.AppendUint(buf[:0], n, 10)); err != nil {
		e.setErr(err)
	}
	return e
}

// NIL writes NIL.
func (e *Encoder) NIL() *Encoder { e.writeString("NIL"); return e }

// Quoted writes s as a quoted string, escaping "\" and DQUOTE. The caller
// ensures s holds no CR, LF or NUL (use String when unsure).
func (e *Encoder) Quoted(s string) *Encoder {
	if !e.ok() {
		return e
	}
	e.writeByte('"')
	for {
		i := strings.IndexAny(s, `"\`)
		if i < 0 {
			break
		}
		e.writeString(s[:i])
		e.writeByte('\\')
		e.writeByte(s[i])
		s = s[i+1:]
	}
	e.writeString(s)
	e.writeByte('"')
	return e
}

// quotable reports whether s may go out as a quoted string: RFC 3501
// QUOTED-CHAR is any 7-bit TEXT-CHAR (no NUL, CR, LF); with UTF8 RFC 9051
// adds UTF8-2/3/4, i.e. valid UTF-8.
func (e *Encoder) quotable(s string) bool {
	if len(s) > maxQuotedLen {
		return false
	}
	eight := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0, c == '\r', c == '\n':
			return false
		case c >= 0x80:
			eight = true
		}
	}
	if eight {
		return e.UTF8 && utf8.ValidString(s)
	}
	return true
}

// String writes s as a quoted string when every byte is allowed there and
// it is at most 1000 bytes long, otherwise as a literal {n}CRLF<bytes>
// (RFC 9051 string). A NUL byte cannot be sent in a string at all; such a
// string goes out as a literal anyway (the caller should not send NUL).
func (e *Encoder) String(s string) *Encoder {
	if e.quotable(s) {
		return e.Quoted(s)
	}
	if !e.ok() {
		return e
	}
	e.literalHeader(int64(len(s)), false)
	e.writeString(s)
	return e
}

// NString writes s as a string, or NIL when isNil.
func (e *Encoder) NString(s string, isNil bool) *Encoder {
	if isNil {
		return e.NIL()
	}
	return e.String(s)
}

// NStringPtr writes *s as a string, or NIL when s is nil.
func (e *Encoder) NStringPtr(s *string) *Encoder {
	if s == nil {
		return e.NIL()
	}
	return e.String(*s)
}

// nstringEmptyNIL writes NIL for "" and a string otherwise.
func (e *Encoder) nstringEmptyNIL(s string) *Encoder { return e.NString(s, s == "") }

func (e *Encoder) literalHeader(size int64, binary bool) {
	if binary {
		e.writeByte('~')
	}
	e.writeByte('{')
	e.Number64(uint64(size))
	e.writeString("}\r\n")
}

// Literal writes a literal header ({size}CRLF, or literal8 ~{size}CRLF when
// binary, RFC 3516) and returns a writer for exactly size bytes of content.
// Until that writer is closed, any other use of the encoder is an error.
// Writing more than size bytes, or closing after fewer, is an error that
// becomes the encoder's sticky error: the response stream is then broken
// and the caller must close the connection.
func (e *Encoder) Literal(size int64, binary bool) io.WriteCloser {
	lw := &literalWriter{e: e, size: size}
	if size < 0 {
		e.setErr(fmt.Errorf("imapconn: negative literal size %d", size))
	}
	if !e.ok() {
		lw.closed = true
		return lw
	}
	e.literalHeader(size, binary)
	if e.err == nil {
		e.lit = lw
	} else {
		lw.closed = true
	}
	return lw
}

// ErrLiteralSize is wrapped by the error a streamed literal returns when its
// content does not have the announced size.
var ErrLiteralSize = errors.New("imapconn: literal content does not match its announced size")

type literalWriter struct {
	e       *Encoder
	size    int64
	written int64
	closed  bool
}

func (lw *literalWriter) Write(p []byte) (int, error) {
	e := lw.e
	if lw.closed {
		if e.err != nil {
			return 0, e.err
		}
		return 0, errors.New("imapconn: write to a closed literal")
	}
	if e.err != nil {
		return 0, e.err
	}
	if int64(len(p)) > lw.size-lw.written {
		e.setErr(fmt.Errorf("%w: more than %d bytes written", ErrLiteralSize, lw.size))
		return 0, e.err
	}
	n, err := e.w.Write(p)
	lw.written += int64(n)
	if err != nil {
		e.setErr(err)
		return n, err
	}
	return n, nil
}

func (lw *literalWriter) Close() error {
	e := lw.e
	if lw.closed {
		return e.err
	}
	lw.closed = true
	if e.lit == lw {
		e.lit = nil
	}
	if lw.written != lw.size && e.err == nil {
		e.setErr(fmt.Errorf("%w: %d of %d bytes written", ErrLiteralSize, lw.written, lw.size))
	}
	return e.err
}

// List writes "(" item(0) SP item(1) ... ")".
func (e *Encoder) List(n int, item func(i int)) *Encoder {
	e.writeByte('(')
	for i := 0; i < n; i++ {
		if i > 0 {
			e.writeByte(' ')
		}
		item(i)
	}
	e.writeByte(')')
	return e
}

// Flag writes a flag (atom, or "\" atom for system flags) verbatim; the
// caller ensures stored keywords are valid atoms.
func (e *Encoder) Flag(f imap.Flag) *Encoder { return e.Atom(string(f)) }

// Flags writes a parenthesized flag list.
func (e *Encoder) Flags(flags []imap.Flag) *Encoder {
	return e.List(len(flags), func(i int) { e.Flag(flags[i]) })
}

// Mailbox writes a mailbox name held as UTF-8: INBOX (any case) as
// "INBOX", other names as modified UTF-7 (RFC 3501 5.1.3) unless UTF8 is
// set, then as a string.
func (e *Encoder) Mailbox(name string) *Encoder {
	if strings.EqualFold(name, "INBOX") {
		return e.Atom("INBOX") // mailbox = "INBOX" / astring
	}
	return e.mailboxString(name)
}

func (e *Encoder) mailboxString(name string) *Encoder {
	if !e.UTF8 {
		name = EncodeMailboxName(name)
	}
	return e.String(name)
}

// DateTime writes an RFC 9051 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz" with
// the day padded by a space (date-day-fixed), in t's own zone.
func (e *Encoder) DateTime(t time.Time) *Encoder {
	if !e.ok() {
		return e
	}
	e.writeByte('"')
	e.writeString(t.Format("_2-Jan-2006 15:04:05 -0700"))
	e.writeByte('"')
	return e
}

// NumSet writes a sequence-set (or uid-set): ranges as "a:b", "a:*" and
// "*". An empty set cannot be written and is an error.
func (e *Encoder) NumSet(set imap.NumSet) *Encoder {
	if !e.ok() {
		return e
	}
	type rng struct{ start, stop uint32 }
	var ranges []rng
	switch set := set.(type) {
	case imap.SeqSet:
		for _, r := range set {
			ranges = append(ranges, rng{r.Start, r.Stop})
		}
	case imap.UIDSet:
		if imap.IsSearchRes(set) {
			e.writeByte('$')
			return e
		}
		for _, r := range set {
			ranges = append(ranges, rng{uint32(r.Start), uint32(r.Stop)})
		}
	case nil:
	default:
		e.setErr(fmt.Errorf("imapconn: unsupported number set %T", set))
		return e
	}
	if len(ranges) == 0 {
		e.setErr(errors.New("imapconn: empty sequence set"))
		return e
	}
	num := func(n uint32) {
		if n == 0 {
			e.writeByte('*')
		} else {
			e.Number(n)
		}
	}
	for i, r := range ranges {
		if i > 0 {
			e.writeByte(',')
		}
		num(r.start)
		if r.start != r.stop {
			e.writeByte(':')
			num(r.stop)
		}
	}
	return e
}

func numSetEmpty(set imap.NumSet) bool {
	switch set := set.(type) {
	case nil:
		return true
	case imap.SeqSet:
		return len(set) == 0
	case imap.UIDSet:
		return len(set) == 0
	}
	return false
}

// sanitizeText makes s a valid text (1*TEXT-CHAR): CR, LF and NUL become
// spaces; "" becomes def.
func sanitizeText(s, def string) string {
	if s == "" {
		return def
	}
	if strings.ContainsAny(s, "\r\n\x00") {
		s = strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == 0 {
				return ' '
			}
			return r
		}, s)
	}
	return s
}

func defaultText(typ imap.StatusResponseType) string {
	switch typ {
	case imap.StatusResponseTypeOK:
		return "Completed"
	case imap.StatusResponseTypeNo:
		return "Failed"
	case imap.StatusResponseTypeBad:
		return "Bad command"
	case imap.StatusResponseTypePreAuth:
		return "Logged in"
	case imap.StatusResponseTypeBye:
		return "Logging out"
	}
	return "Done"
}

// StatusResponse writes a full status response line:
//
//	tag SP type [SP "[" code [SP args] "]"] SP text CRLF
//
// tag is "*" for an untagged response. With an empty code no brackets are
// written; otherwise codeArg, when not nil, writes the code's arguments
// INCLUDING the leading space (e.g. func() { e.SP().Number(uidValidity) }).
// An empty text is replaced by a default one; CR, LF and NUL in text
// become spaces.
func (e *Encoder) StatusResponse(tag string, typ imap.StatusResponseType, code imap.ResponseCode, codeArg func(), text string) error {
	e.Atom(tag).SP().Atom(string(typ)).SP()
	if code != "" {
		e.writeByte('[')
		e.Atom(string(code))
		if codeArg != nil {
			codeArg()
		}
		e.writeString("] ")
	}
	e.writeString(sanitizeText(text, defaultText(typ)))
	e.CRLF()
	return e.err
}

// Caps writes capabilities separated by spaces (for CAPABILITY responses
// and the [CAPABILITY ...] response code).
func (e *Encoder) Caps(caps []imap.Cap) *Encoder {
	for i, c := range caps {
		if i > 0 {
			e.SP()
		}
		e.Atom(string(c))
	}
	return e
}

// Capability writes "* CAPABILITY cap1 cap2 ..." CRLF. The caller includes
// IMAP4rev1 and/or IMAP4rev2 in caps.
func (e *Encoder) Capability(caps []imap.Cap) error {
	e.Atom("* CAPABILITY")
	if len(caps) > 0 {
		e.SP().Caps(caps)
	}
	e.CRLF()
	return e.err
}

// FlagsResponse writes "* FLAGS (flags)" CRLF.
func (e *Encoder) FlagsResponse(flags []imap.Flag) error {
	e.Atom("* FLAGS ").Flags(flags).CRLF()
	return e.err
}

// PermanentFlags writes "* OK [PERMANENTFLAGS (flags)] text" CRLF.
func (e *Encoder) PermanentFlags(flags []imap.Flag, text string) error {
	return e.StatusResponse("*", imap.StatusResponseTypeOK, "PERMANENTFLAGS",
		func() { e.SP().Flags(flags) }, sanitizeText(text, "Flags permitted"))
}

// ListResponse writes "* LIST (attrs) delim mailbox [extended]" CRLF, or
// "* LSUB ..." when lsub (LSUB has no extended items). The delimiter is a
// quoted character, NIL when data.Delim is 0. Extended items (RFC 5258,
// RFC 9051): CHILDINFO as ("CHILDINFO" ("SUBSCRIBED")), OLDNAME as
// ("OLDNAME" ("old")). data.Status is not written here: the caller sends
// the STATUS response (LIST-STATUS) with StatusData.
func (e *Encoder) ListResponse(data *imap.ListData, lsub bool) error {
	if lsub {
		e.Atom("* LSUB ")
	} else {
		e.Atom("* LIST ")
	}
	e.List(len(data.Attrs), func(i int) { e.Atom(string(data.Attrs[i])) }).SP()
	e.delim(data.Delim).SP()
	e.Mailbox(data.Mailbox)
	if !lsub {
		var items []func()
		if data.ChildInfo != nil && data.ChildInfo.Subscribed {
			items = append(items, func() { e.Quoted("CHILDINFO").SP().Atom(`("SUBSCRIBED")`) })
		}
		if data.OldName != "" {
			items = append(items, func() {
				e.Quoted("OLDNAME").SP().Special('(').Mailbox(data.OldName).Special(')')
			})
		}
		if len(items) > 0 {
			e.SP().List(len(items), func(i int) { items[i]() })
		}
	}
	e.CRLF()
	return e.err
}

func (e *Encoder) delim(d rune) *Encoder {
	if d == 0 {
		return e.NIL()
	}
	return e.Quoted(string(d))
}

// StatusData writes "* STATUS mailbox (items)" CRLF with the items set in
// data, in this order: MESSAGES, UIDNEXT, UIDVALIDITY, UNSEEN, DELETED,
// SIZE, DELETED-STORAGE, RECENT, HIGHESTMODSEQ, APPENDLIMIT. Pointer items
// are written when not nil, UIDNext/UIDValidity/HighestModSeq when not 0.
// To answer "APPENDLIMIT NIL" (no limit, RFC 7889) use
// StatusDataWithOptions.
func (e *Encoder) StatusData(data *imap.StatusData) error {
	return e.StatusDataWithOptions(data, nil)
}

// StatusDataWithOptions is StatusData, plus: when opts asks for
// APPENDLIMIT and data.AppendLimit is nil, "APPENDLIMIT NIL" is written.
func (e *Encoder) StatusDataWithOptions(data *imap.StatusData, opts *imap.StatusOptions, extra ...StatusItem) error {
	e.Atom("* STATUS ").Mailbox(data.Mailbox).SP()
	var items []func()
	add := func(name string, f func()) {
		items = append(items, func() { e.Atom(name).SP(); f() })
	}
	if data.NumMessages != nil {
		add("MESSAGES", func() { e.Number(*data.NumMessages) })
	}
	if data.UIDNext != 0 {
		add("UIDNEXT", func() { e.Number(uint32(data.UIDNext)) })
	}
	if data.UIDValidity != 0 {
		add("UIDVALIDITY", func() { e.Number(data.UIDValidity) })
	}
	if data.NumUnseen != nil {
		add("UNSEEN", func() { e.Number(*data.NumUnseen) })
	}
	if data.NumDeleted != nil {
		add("DELETED", func() { e.Number(*data.NumDeleted) })
	}
	if data.Size != nil {
		add("SIZE", func() { e.Number64(uint64(max(*data.Size, 0))) })
	}
	if data.DeletedStorage != nil {
		add("DELETED-STORAGE", func() { e.Number64(uint64(max(*data.DeletedStorage, 0))) })
	}
	if data.NumRecent != nil {
		add("RECENT", func() { e.Number(*data.NumRecent) })
	}
	if data.HighestModSeq != 0 {
		add("HIGHESTMODSEQ", func() { e.Number64(data.HighestModSeq) })
	}
	if data.AppendLimit != nil {
		add("APPENDLIMIT", func() { e.Number(*data.AppendLimit) })
	} else if opts != nil && opts.AppendLimit {
		add("APPENDLIMIT", func() { e.NIL() })
	}
	for _, x := range extra {
		add(x.Name, func() { x.Value(e) })
	}
	e.List(len(items), func(i int) { items[i]() }).CRLF()
	return e.err
}

// Search writes "* SEARCH n1 n2 ..." CRLF, with " (MODSEQ m)" (RFC 7162)
// when modSeq is not 0 and there is at least one result.
func (e *Encoder) Search(nums []uint32, modSeq uint64) error {
	e.Atom("* SEARCH")
	for _, n := range nums {
		e.SP().Number(n)
	}
	if modSeq != 0 && len(nums) > 0 {
		e.Atom(" (MODSEQ ").Number64(modSeq).Special(')')
	}
	e.CRLF()
	return e.err
}

// ESearch writes an RFC 4731 / RFC 9051 ESEARCH response, "* ESEARCH"
// followed by [(TAG "tag")] [UID] [MIN n] [MAX n] [COUNT n] [ALL set]
// [MODSEQ m] and CRLF.
//
// tag "" omits the correlator. MIN, MAX and COUNT are written when not 0,
// ALL when not empty, MODSEQ (RFC 7162) when not 0. Since "COUNT 0" must be
// sent when COUNT was asked for and nothing matched, callers that know the
// RETURN options use ESearchWithOptions.
func (e *Encoder) ESearch(tag string, uid bool, data *imap.SearchData) error {
	return e.ESearchWithOptions(tag, uid, data, nil)
}

// ESearchWithOptions is ESearch writing exactly the result options ret
// asks for: MIN, MAX and ALL are still omitted when there is no match
// (RFC 4731 section 3.1), COUNT is always written when asked for. ret nil
// behaves as ESearch.
func (e *Encoder) ESearchWithOptions(tag string, uid bool, data *imap.SearchData, ret *imap.SearchOptions) error {
	return e.ESearchPartial(tag, uid, data, ret, nil)
}

// ESearchPartial is ESearchWithOptions with RFC 5267's PARTIAL return data
// when partial is not nil: "PARTIAL (first:last set)", with NIL for the
// set when no result is at those positions (section 4.4).
func (e *Encoder) ESearchPartial(tag string, uid bool, data *imap.SearchData, ret *imap.SearchOptions, partial *PartialRange) error {
	e.Atom("* ESEARCH")
	if tag != "" {
		e.Atom(" (TAG ").String(tag).Special(')')
	}
	if uid {
		e.Atom(" UID")
	}
	if data != nil {
		wantMin, wantMax, wantCount, wantAll := data.Min != 0, data.Max != 0, data.Count != 0, true
		if ret != nil {
			wantMin, wantMax, wantCount, wantAll = ret.ReturnMin, ret.ReturnMax, ret.ReturnCount, ret.ReturnAll
		}
		if wantMin && data.Min != 0 {
			e.Atom(" MIN ").Number(data.Min)
		}
		if wantMax && data.Max != 0 {
			e.Atom(" MAX ").Number(data.Max)
		}
		if wantCount {
			e.Atom(" COUNT ").Number(data.Count)
		}
		if wantAll && !numSetEmpty(data.All) {
			e.Atom(" ALL ").NumSet(data.All)
		}
		if partial != nil {
			e.Atom(" PARTIAL (").Number(partial.First).Special(':').Number(partial.Last).SP()
			if set, ok := partialOf(data.All, *partial); ok {
				e.NumSet(set)
			} else {
				e.NIL()
			}
			e.Special(')')
		}
		if data.ModSeq != 0 {
			e.Atom(" MODSEQ ").Number64(data.ModSeq)
		}
	}
	e.CRLF()
	return e.err
}

// Namespace writes "* NAMESPACE personal other shared" CRLF (RFC 2342,
// RFC 9051): each a list of ("prefix" "delim") or NIL when empty. Prefixes
// are mailbox names (modified UTF-7 unless UTF8).
func (e *Encoder) Namespace(data *imap.NamespaceData) error {
	e.Atom("* NAMESPACE")
	for _, descs := range [][]imap.NamespaceDescriptor{data.Personal, data.Other, data.Shared} {
		e.SP()
		if len(descs) == 0 {
			e.NIL()
			continue
		}
		// Namespace = nil / "(" 1*Namespace-Descr ")": no separator.
		e.Special('(')
		for _, d := range descs {
			e.Special('(').mailboxString(d.Prefix).SP().delim(d.Delim).Special(')')
		}
		e.Special(')')
	}
	e.CRLF()
	return e.err
}

// Enabled writes "* ENABLED cap1 cap2" CRLF (RFC 5161).
func (e *Encoder) Enabled(caps []imap.Cap) error {
	e.Atom("* ENABLED")
	if len(caps) > 0 {
		e.SP().Caps(caps)
	}
	e.CRLF()
	return e.err
}

// ID writes "* ID ("key" "value" ...)" CRLF (RFC 2971), keys sorted, or
// "* ID NIL" when params is empty.
func (e *Encoder) ID(params map[string]string) error {
	e.Atom("* ID ")
	if len(params) == 0 {
		e.NIL()
	} else {
		keys := make([]string, 0, len(params))
		for k := range params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		e.List(len(keys), func(i int) { e.String(keys[i]).SP().String(params[keys[i]]) })
	}
	e.CRLF()
	return e.err
}

// Continuation writes a continuation request "+ text" CRLF (RFC 9051
// continue-req with resp-text); an empty text becomes "Ready". The caller
// flushes.
func (e *Encoder) Continuation(text string) error {
	e.Atom("+ ").Atom(sanitizeText(text, "Ready")).CRLF()
	return e.err
}

// ContinuationBase64 writes "+ " base64(data) CRLF (an AUTHENTICATE
// challenge, RFC 9051 continue-req with base64); empty data gives "+ "
// CRLF. The caller flushes.
func (e *Encoder) ContinuationBase64(data []byte) error {
	e.Atom("+ ").Atom(base64.StdEncoding.EncodeToString(data)).CRLF()
	return e.err
}

// Expunge writes "* seq EXPUNGE" CRLF.
func (e *Encoder) Expunge(seq uint32) error {
	e.Atom("* ").Number(seq).Atom(" EXPUNGE").CRLF()
	return e.err
}

// Exists writes "* n EXISTS" CRLF.
func (e *Encoder) Exists(n uint32) error {
	e.Atom("* ").Number(n).Atom(" EXISTS").CRLF()
	return e.err
}

// Recent writes "* n RECENT" CRLF (IMAP4rev1 only).
func (e *Encoder) Recent(n uint32) error {
	e.Atom("* ").Number(n).Atom(" RECENT").CRLF()
	return e.err
}

// Vanished writes "* VANISHED [(EARLIER) ]uids" CRLF (RFC 7162 QRESYNC).
func (e *Encoder) Vanished(earlier bool, uids imap.UIDSet) error {
	e.Atom("* VANISHED ")
	if earlier {
		e.Atom("(EARLIER) ")
	}
	e.NumSet(uids).CRLF()
	return e.err
}

// Envelope is the data of a FETCH ENVELOPE (RFC 3501 section 7.4.2). Unlike
// imap.Envelope it carries the header texts as found in the message.
//
// Per RFC 3501 the server fills an empty Sender or ReplyTo with From; that
// is the caller's job, the encoder writes NIL for every empty list.
type Envelope struct {
	// Date is the Date header field's text exactly as the sender wrote it;
	// "" is NIL.
	Date string
	// Subject is written as given ("" is NIL). Without UTF8, 8-bit text
	// goes out as a literal.
	Subject string

	From, Sender, ReplyTo, To, Cc, Bcc []imap.Address

	// InReplyTo and MessageID are the raw header texts (with angle
	// brackets); "" is NIL.
	InReplyTo string
	MessageID string
}

// Envelope writes the envelope structure, or NIL when env is nil.
func (e *Encoder) Envelope(env *Envelope) *Encoder {
	if env == nil {
		return e.NIL()
	}
	e.Special('(')
	e.nstringEmptyNIL(env.Date).SP()
	e.nstringEmptyNIL(env.Subject).SP()
	for _, l := range [][]imap.Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		e.addressList(l).SP()
	}
	e.nstringEmptyNIL(env.InReplyTo).SP()
	e.nstringEmptyNIL(env.MessageID)
	e.Special(')')
	return e
}

// addressList writes a list of addresses, NIL when empty. imap.Address
// marks RFC 822 groups in place: a group start has Mailbox = group name
// and no Host, written (NIL NIL "name" NIL); a group end has neither,
// written (NIL NIL NIL NIL) (RFC 3501 section 7.4.2).
func (e *Encoder) addressList(l []imap.Address) *Encoder {
	if len(l) == 0 {
		return e.NIL()
	}
	e.Special('(')
	for i := range l {
		a := &l[i]
		e.Special('(')
		if a.Host == "" { // group start or end
			e.Atom("NIL NIL ").nstringEmptyNIL(a.Mailbox).Atom(" NIL")
		} else {
			e.nstringEmptyNIL(a.Name).Atom(" NIL ").nstringEmptyNIL(a.Mailbox).SP().String(a.Host)
		}
		e.Special(')')
	}
	e.Special(')')
	return e
}

// BodyStructure writes a body (RFC 3501 / RFC 9051 "body"): the BODY form
// when extended is false, the BODYSTRUCTURE form with extension data when
// true.
//
// With extended set, a part whose Extended is nil gets all-NIL extension
// data (single part: MD5 disposition language location; multipart: params
// disposition language location). MD5 is always NIL (imap types carry
// none). Parameter lists are written sorted by name. Empty Type/Subtype
// default to TEXT/PLAIN, an empty Encoding to 7BIT, an empty multipart
// Subtype to MIXED.
//
// A multipart without children is invalid syntax; it is written as a
// multipart with one empty text/plain child ("TEXT" "PLAIN" ("CHARSET"
// "US-ASCII") NIL NIL "7BIT" 0 0), as the session code builds it today.
// Only message/rfc822 and message/global parts are written as
// body-type-msg (envelope, body, lines), since clients choose the syntax by
// media type; MessageRFC822 on any other type is ignored. Such a part
// without MessageRFC822 data gets an all-NIL envelope, an empty text/plain
// body and 0 lines. The envelope of an encapsulated message comes from
// imap.Envelope: its Date is re-formatted ("Mon, 02 Jan 2006 15:04:05
// -0700", NIL when zero) and angle brackets are put back around its
// message identifiers.
func (e *Encoder) BodyStructure(bs imap.BodyStructure, extended bool) *Encoder {
	switch bs := bs.(type) {
	case *imap.BodyStructureSinglePart:
		if bs == nil {
			return e.bodySingle(emptyTextPart(), extended)
		}
		return e.bodySingle(bs, extended)
	case *imap.BodyStructureMultiPart:
		if bs == nil {
			return e.bodySingle(emptyTextPart(), extended)
		}
		return e.bodyMulti(bs, extended)
	default:
		return e.bodySingle(emptyTextPart(), extended)
	}
}

func emptyTextPart() *imap.BodyStructureSinglePart {
	return &imap.BodyStructureSinglePart{
		Type: "TEXT", Subtype: "PLAIN", Params: map[string]string{"CHARSET": "US-ASCII"},
		Encoding: "7BIT", Text: &imap.BodyStructureText{},
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (e *Encoder) bodySingle(bs *imap.BodyStructureSinglePart, extended bool) *Encoder {
	typ := orDefault(bs.Type, "TEXT")
	sub := orDefault(bs.Subtype, "PLAIN")
	e.Special('(')
	e.String(typ).SP().String(sub).SP()
	e.params(bs.Params).SP()
	e.nstringEmptyNIL(bs.ID).SP()
	e.nstringEmptyNIL(bs.Description).SP()
	e.String(orDefault(bs.Encoding, "7BIT")).SP()
	e.Number(bs.Size)

	isMsg := strings.EqualFold(typ, "MESSAGE") &&
		(strings.EqualFold(sub, "RFC822") || strings.EqualFold(sub, "GLOBAL"))
	switch {
	case isMsg && bs.MessageRFC822 != nil:
		m := bs.MessageRFC822
		e.SP()
		if m.Envelope != nil {
			e.Envelope(envelopeFromIMAP(m.Envelope))
		} else {
			e.Envelope(&Envelope{})
		}
		e.SP().BodyStructure(m.BodyStructure, extended)
		e.SP().Number64(uint64(max(m.NumLines, 0)))
	case isMsg:
		e.SP().Envelope(&Envelope{}).SP().BodyStructure(nil, extended).Atom(" 0")
	case strings.EqualFold(typ, "TEXT"):
		var lines int64
		if bs.Text != nil {
			lines = bs.Text.NumLines
		}
		e.SP().Number64(uint64(max(lines, 0)))
	}

	if extended {
		ext := bs.Extended
		if ext == nil {
			ext = &imap.BodyStructureSinglePartExt{}
		}
		e.Atom(" NIL ") // body-fld-md5
		e.disposition(ext.Disposition).SP()
		e.language(ext.Language).SP()
		e.nstringEmptyNIL(ext.Location)
	}
	e.Special(')')
	return e
}

func (e *Encoder) bodyMulti(bs *imap.BodyStructureMultiPart, extended bool) *Encoder {
	e.Special('(')
	if len(bs.Children) == 0 {
		e.bodySingle(emptyTextPart(), extended)
	}
	for _, c := range bs.Children {
		e.BodyStructure(c, extended)
	}
	e.SP().String(orDefault(bs.Subtype, "MIXED"))
	if extended {
		ext := bs.Extended
		if ext == nil {
			ext = &imap.BodyStructureMultiPartExt{}
		}
		e.SP().params(ext.Params).SP()
		e.disposition(ext.Disposition).SP()
		e.language(ext.Language).SP()
		e.nstringEmptyNIL(ext.Location)
	}
	e.Special(')')
	return e
}

// params writes body-fld-param: ("name" "value" ...) sorted by name, or NIL.
func (e *Encoder) params(p map[string]string) *Encoder {
	if len(p) == 0 {
		return e.NIL()
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return e.List(len(keys), func(i int) { e.String(keys[i]).SP().String(p[keys[i]]) })
}

// disposition writes body-fld-dsp: ("value" params) or NIL.
func (e *Encoder) disposition(d *imap.BodyStructureDisposition) *Encoder {
	if d == nil || d.Value == "" {
		return e.NIL()
	}
	return e.Special('(').String(d.Value).SP().params(d.Params).Special(')')
}

// language writes body-fld-lang: NIL, a string, or a list of strings.
func (e *Encoder) language(l []string) *Encoder {
	switch len(l) {
	case 0:
		return e.NIL()
	case 1:
		return e.String(l[0])
	}
	return e.List(len(l), func(i int) { e.String(l[i]) })
}

// envelopeFromIMAP converts the envelope go-imap types carry in
// BodyStructureMessageRFC822. Its Date is a time (written RFC 5322 style),
// its message identifiers lack angle brackets (added back).
func envelopeFromIMAP(env *imap.Envelope) *Envelope {
	out := &Envelope{
		Subject: env.Subject,
		From:    env.From, Sender: env.Sender, ReplyTo: env.ReplyTo,
		To: env.To, Cc: env.Cc, Bcc: env.Bcc,
	}
	if !env.Date.IsZero() {
		out.Date = env.Date.Format("Mon, 02 Jan 2006 15:04:05 -0700")
	}
	if len(env.InReplyTo) > 0 {
		ids := make([]string, len(env.InReplyTo))
		for i, id := range env.InReplyTo {
			ids[i] = "<" + id + ">"
		}
		out.InReplyTo = strings.Join(ids, " ")
	}
	if env.MessageID != "" {
		out.MessageID = "<" + env.MessageID + ">"
	}
	return out
}
