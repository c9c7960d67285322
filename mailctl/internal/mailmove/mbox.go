package mailmove

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// mboxStatusHeaders are the header fields through which mutt and Dovecot
// keep flags in an mbox; they describe the mailbox, not the message, so an
// import takes them out of the message (as Dovecot hides them).
var mboxStatusHeaders = []string{"status", "x-status", "x-keywords", "x-uid", "x-imap", "x-imapbase"}

// ReadMbox reads an mbox (mboxrd or mboxo) and calls fn for each message:
// a line starting with "From " begins a message; lines of the form
// ">...>From " lose one ">" (mboxrd); the blank line that ends each
// message is not part of it; the From line's date is the internal date;
// Status (R: \Seen), X-Status (A: \Answered, F: \Flagged, T: \Draft,
// D: \Deleted) and X-Keywords give the flags and are removed from the
// header section.
func ReadMbox(r io.Reader, fn func(Message) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		cur     []byte
		date    time.Time
		started bool
		n       int
		offset  int64
		start   int64
	)
	flush := func() error {
		if !started {
			return nil
		}
		n++
		body := cur
		if bytes.HasSuffix(body, []byte("\n")) {
			body = body[:len(body)-1]
			body = bytes.TrimSuffix(body, []byte("\r"))
		}
		body, flags := takeStatusHeaders(body)
		cur = nil
		return fn(bytesMessage(body, flags, date, fmt.Sprintf("message %d (offset %d)", n, start)))
	}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: read the rest of it.
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if len(line) > 0 {
			switch {
			case bytes.HasPrefix(line, []byte("From ")):
				if err := flush(); err != nil {
					return err
				}
				started, start = true, offset
				date = fromLineDate(string(line))
			case !started:
				if len(bytes.TrimSpace(line)) > 0 {
					return fmt.Errorf("not an mbox: the first line does not start with \"From \"")
				}
			default:
				if isQuotedFrom(line) {
					cur = append(cur, line[1:]...)
				} else {
					cur = append(cur, line...)
				}
			}
			offset += int64(len(line))
		}
		if err == io.EOF {
			return flush()
		}
		if err != nil {
			return err
		}
	}
}

// isQuotedFrom says whether line is ">From ", ">>From ", ...
func isQuotedFrom(line []byte) bool {
	i := 0
	for i < len(line) && line[i] == '>' {
		i++
	}
	return i > 0 && bytes.HasPrefix(line[i:], []byte("From "))
}

// fromLineDate parses the date of "From sender date": asctime, in UTC
// unless a zone follows; the zero time when it cannot be read.
func fromLineDate(line string) time.Time {
	f := strings.Fields(strings.TrimSpace(line))
	if len(f) < 3 {
		return time.Time{}
	}
	rest := strings.Join(f[2:], " ")
	for _, layout := range []string{
		"Mon Jan _2 15:04:05 2006", "Mon Jan _2 15:04:05 2006 -0700", "Mon Jan _2 15:04:05 MST 2006",
		"Mon Jan _2 15:04:05 -0700 2006", "Mon Jan _2 15:04 2006", "Mon, _2 Jan 2006 15:04:05 -0700",
	} {
		norm := strings.Join(strings.Fields(layout), " ")
		if t, err := time.Parse(norm, rest); err == nil {
			return t
		}
		// Extra words after the date ("remote from ..."): try the prefix.
		if n := len(strings.Fields(norm)); n < len(f)-2 {
			if t, err := time.Parse(norm, strings.Join(f[2:2+n], " ")); err == nil {
				return t
			}
		}
	}
	return time.Time{}
}

// takeStatusHeaders removes the mbox status fields from the header section
// and returns the flags they gave.
func takeStatusHeaders(msg []byte) ([]byte, []string) {
	var (
		out   []byte
		flags []string
		rest  = msg
	)
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		line := rest
		if i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		trim := bytes.TrimRight(line, "\r\n")
		if len(trim) == 0 { // end of the header section
			out = append(out, line...)
			out = append(out, rest...)
			return out, flags
		}
		name, value, ok := bytes.Cut(trim, []byte(":"))
		if ok {
			lname := strings.ToLower(string(bytes.TrimSpace(name)))
			if contains(mboxStatusHeaders, lname) {
				flags = append(flags, statusFlags(lname, string(value))...)
				continue
			}
		}
		out = append(out, line...)
	}
	return out, flags
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

func statusFlags(field, value string) []string {
	var flags []string
	switch field {
	case "status":
		if strings.Contains(value, "R") {
			flags = append(flags, `\Seen`)
		}
	case "x-status":
		for _, m := range []struct {
			c    string
			flag string
		}{{"A", `\Answered`}, {"F", `\Flagged`}, {"T", `\Draft`}, {"D", `\Deleted`}} {
			if strings.Contains(value, m.c) {
				flags = append(flags, m.flag)
			}
		}
	case "x-keywords":
		for _, kw := range strings.FieldsFunc(value, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
			flags = append(flags, kw)
		}
	}
	return flags
}

// MboxWriter writes messages as mboxrd: a From line with the internal
// date (asctime, UTC), Status/X-Status/X-Keywords fields first in the
// header section, ">"-quoted "From " lines, a blank line after each.
// ReadMbox gives back the same bytes, flags and date (to the second).
type MboxWriter struct {
	w *bufio.Writer
}

// NewMboxWriter writes to w.
func NewMboxWriter(w io.Writer) *MboxWriter { return &MboxWriter{w: bufio.NewWriterSize(w, 64<<10)} }

// Add writes one message.
func (m *MboxWriter) Add(body io.Reader, flags []string, date time.Time) error {
	br := bufio.NewReaderSize(body, 64<<10)
	fmt.Fprintf(m.w, "From MAILER-DAEMON %s\n", date.UTC().Format(time.ANSIC))
	// Status fields end with the line ending the message's first line uses.
	eol := "\n"
	if peek, _ := br.Peek(4096); bytes.IndexByte(peek, '\n') > 0 && peek[bytes.IndexByte(peek, '\n')-1] == '\r' {
		eol = "\r\n"
	}
	status := "O"
	if hasFlag(flags, `\Seen`) {
		status = "RO"
	}
	fmt.Fprintf(m.w, "Status: %s%s", status, eol)
	var xs string
	for _, s := range []struct{ flag, c string }{{`\Answered`, "A"}, {`\Flagged`, "F"}, {`\Draft`, "T"}, {`\Deleted`, "D"}} {
		if hasFlag(flags, s.flag) {
			xs += s.c
		}
	}
	if xs != "" {
		fmt.Fprintf(m.w, "X-Status: %s%s", xs, eol)
	}
	if kws := keywordsOf(flags); len(kws) > 0 {
		fmt.Fprintf(m.w, "X-Keywords: %s%s", strings.Join(kws, " "), eol)
	}
	for {
		line, err := br.ReadSlice('\n')
		full := errors.Is(err, bufio.ErrBufferFull)
		if len(line) > 0 {
			// Only the start of a line can be a From line; a long line's
			// later pieces are written as they are.
			if isQuotedFrom(line) || bytes.HasPrefix(line, []byte("From ")) {
				m.w.WriteByte('>')
			}
			m.w.Write(line)
		}
		for full {
			line, err = br.ReadSlice('\n')
			full = errors.Is(err, bufio.ErrBufferFull)
			m.w.Write(line)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	m.w.WriteByte('\n')
	return nil
}

// Flush writes what is buffered.
func (m *MboxWriter) Flush() error { return m.w.Flush() }
