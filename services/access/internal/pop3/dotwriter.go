package pop3

import (
	"bufio"
	"errors"
	"io"
)

// dotWriter writes a message as a POP3 multi-line response body: every line
// ends in CRLF (bare LFs are completed), a line starting with "." gets another
// (RFC 1939 3), and finish ends it with ".". With bodyLines >= 0 it stops after
// the header, the blank line and that many body lines (TOP).
type dotWriter struct {
	w           *bufio.Writer
	atLineStart bool
	prevCR      bool
	lineLen     int  // bytes in the current line so far (to spot the blank line)
	inBody      bool // the blank line after the header was written
	bodyLines   int  // lines of body still allowed; < 0 = unlimited
	done        bool
}

func newDotWriter(w *bufio.Writer, bodyLines int) *dotWriter {
	return &dotWriter{w: w, atLineStart: true, bodyLines: bodyLines}
}

var errEnough = errors.New("enough lines")

func (d *dotWriter) write(p []byte) error {
	for _, b := range p {
		if d.done || d.atLineStart && d.inBody && d.bodyLines == 0 {
			d.done = true
			return errEnough
		}
		if d.atLineStart && b == '.' {
			d.w.WriteByte('.')
		}
		wasCR := d.prevCR
		if b == '\n' && !wasCR {
			d.w.WriteByte('\r')
		}
		d.w.WriteByte(b)
		d.prevCR = b == '\r'
		d.atLineStart = b == '\n'
		if b != '\n' {
			d.lineLen++
			continue
		}
		blank := d.lineLen == 0 || d.lineLen == 1 && wasCR
		switch {
		case !d.inBody && blank:
			d.inBody = true
		case d.inBody && d.bodyLines > 0:
			d.bodyLines--
		}
		d.lineLen = 0
	}
	return nil
}

// copyFrom streams r through the writer.
func (d *dotWriter) copyFrom(r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if werr := d.write(buf[:n]); werr == errEnough {
				return nil
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// finish completes the last line and writes the terminating ".".
func (d *dotWriter) finish() error {
	if !d.atLineStart {
		d.w.WriteString("\r\n")
	}
	_, err := d.w.WriteString(".\r\n")
	return err
}
