// Package spool holds one incoming message while its signatures are
// checked: in memory up to a threshold, then in a temporary file that is
// removed when the message is done. Nothing survives the transaction; the
// sender has no 250 until the message is in the storage tier.
package spool

import (
	"bytes"
	"errors"
	"io"
	"os"
)

// memoryLimit is how much of a message stays in memory.
const memoryLimit = 1 << 20

// ErrBareLF reports a line ending in LF without CR (RFC 5321 2.3.8). Such
// messages are refused: relayed on, `\n.\n` could end a message early at a
// lenient next hop and turn one message into two (SMTP smuggling).
var ErrBareLF = errors.New("bare LF in message data")

// Default header bounds: Postfix's header_size_limit, and far more fields
// than real mail carries (a long Received chain is a few dozen).
const (
	DefaultMaxHeaderBytes  = 102400
	DefaultMaxHeaderFields = 1000
)

// ErrHeaderTooLarge reports a header section over MaxHeaderBytes or
// MaxHeaderFields.
var ErrHeaderTooLarge = errors.New("message header too large")

// Spool is one message.
type Spool struct {
	// MaxHeaderBytes and MaxHeaderFields (0 = no limit) bound the header
	// section, as Postfix's header_size_limit does: everything that parses
	// headers later (SPF, DKIM, DMARC, the index) then works on a bounded
	// input, however a sender folds a field.
	MaxHeaderBytes  int
	MaxHeaderFields int

	// NormalizeLineEndings turns bare LFs and bare CRs into CRLF instead
	// of refusing bare LFs (for submission, where a user's client may send
	// them): what is relayed on is then well-formed, and neither `\n.\n`
	// nor `\r.\r\n` can end a message early at the next hop.
	NormalizeLineEndings bool

	dir       string
	mem       bytes.Buffer
	file      *os.File
	size      int64
	prevCR    bool
	pendingCR bool // normalizing: a CR whose next byte is not seen yet

	// The header section as it streams in.
	headerDone  bool
	headerBytes int
	fields      int
	lineLen     int // bytes of the current line before its CR/LF
}

// New returns an empty spool whose overflow goes to dir (os.TempDir if empty).
func New(dir string) *Spool { return &Spool{dir: dir} }

// ReadFrom fills the spool from r, refusing bare LFs (or normalizing line
// endings, see NormalizeLineEndings).
func (s *Spool) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			p := buf[:n]
			if s.NormalizeLineEndings {
				p = s.normalize(p)
			}
			if len(p) > 0 {
				if werr := s.write(p); werr != nil {
					return total, werr
				}
			}
			total += int64(n)
		}
		if err == io.EOF {
			if s.pendingCR { // a bare CR at the very end
				s.pendingCR = false
				if werr := s.write([]byte("\r\n")); werr != nil {
					return total, werr
				}
			}
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (s *Spool) write(p []byte) error {
	if err := s.checkLineEndings(p); err != nil {
		return err
	}
	if !s.headerDone {
		if err := s.countHeader(p); err != nil {
			return err
		}
	}
	s.prevCR = p[len(p)-1] == '\r'
	s.size += int64(len(p))
	if s.file == nil && s.mem.Len()+len(p) <= memoryLimit {
		s.mem.Write(p)
		return nil
	}
	if s.file == nil {
		f, err := os.CreateTemp(s.dir, "mailfleet-spool-*")
		if err != nil {
			return err
		}
		os.Remove(f.Name()) // unlinked at once: gone even if the pod dies
		if _, err := f.Write(s.mem.Bytes()); err != nil {
			f.Close()
			return err
		}
		s.file = f
		s.mem = bytes.Buffer{}
	}
	_, err := s.file.Write(p)
	return err
}

// normalize returns p with every bare LF preceded by a CR.
// normalize returns p with every line ending CRLF: a bare LF gets its CR,
// a bare CR its LF. A CR at the end of p waits for the next call's first
// byte (or the end of the data) to tell which it is.
func (s *Spool) normalize(p []byte) []byte {
	out := make([]byte, 0, len(p)+16)
	for _, c := range p {
		if s.pendingCR {
			s.pendingCR = false
			out = append(out, '\r', '\n')
			if c == '\n' {
				continue // that CR's own LF
			}
		}
		switch c {
		case '\r':
			s.pendingCR = true
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

// checkLineEndings refuses a bare LF in p, unless the spool normalizes
// (normalize left none).
func (s *Spool) checkLineEndings(p []byte) error {
	if s.NormalizeLineEndings {
		return nil
	}
	for i, c := range p {
		if c == '\n' && !(i == 0 && s.prevCR || i > 0 && p[i-1] == '\r') {
			return ErrBareLF
		}
	}
	return nil
}

// countHeader follows the header section through p: its bytes, and its
// fields (lines that do not start with a space or tab), up to the empty
// line that ends it.
func (s *Spool) countHeader(p []byte) error {
	for _, c := range p {
		s.headerBytes++
		switch c {
		case '\r':
			continue
		case '\n':
			if s.lineLen == 0 {
				s.headerDone = true
				return nil
			}
			s.lineLen = 0
			continue
		}
		if s.lineLen == 0 && c != ' ' && c != '\t' {
			s.fields++
		}
		s.lineLen++
		if s.MaxHeaderBytes > 0 && s.headerBytes > s.MaxHeaderBytes || s.MaxHeaderFields > 0 && s.fields > s.MaxHeaderFields {
			return ErrHeaderTooLarge
		}
	}
	return nil
}

// Size is the message size in bytes.
func (s *Spool) Size() int64 { return s.size }

// Reader returns a reader over the whole message (call it as often as needed).
func (s *Spool) Reader() io.Reader {
	if s.file == nil {
		return bytes.NewReader(s.mem.Bytes())
	}
	return io.NewSectionReader(s.file, 0, s.size)
}

// Close releases the spool.
func (s *Spool) Close() error {
	if s.file != nil {
		return s.file.Close()
	}
	return nil
}
