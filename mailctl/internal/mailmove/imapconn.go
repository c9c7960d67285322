package mailmove

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// rev1Conn hides IMAP4rev2 from the capabilities the server announces.
// go-imap v2's client (beta.8) writes mailbox names in UTF-8 to any server
// that announces IMAP4rev2, though such a server takes UTF-8 only once
// the session ENABLEs it (RFC 9051 6.3.1), and decodes names it receives
// as modified UTF-7 even after ENABLE: so folders with non-ASCII names
// could be neither listed nor selected. As an IMAP4rev1 client it is
// consistent (modified UTF-7 both ways). Literals pass untouched, so no
// message byte is ever changed.
type rev1Conn struct {
	net.Conn
	r       *bufio.Reader
	pending []byte // what the next Read returns first
	literal int64  // octets of a literal still to pass through
}

func newRev1Conn(c net.Conn, greeting []byte) *rev1Conn {
	return &rev1Conn{Conn: c, r: bufio.NewReaderSize(c, 64<<10), pending: greeting}
}

var (
	literalEnd = regexp.MustCompile(`\{(\d+)\+?\}\r?\n$`)
	capRev2    = regexp.MustCompile(`(?i) IMAP4rev2\b`)
)

func (c *rev1Conn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.literal > 0 {
		if int64(len(p)) > c.literal {
			p = p[:c.literal]
		}
		n, err := c.r.Read(p)
		c.literal -= int64(n)
		return n, err
	}
	line, err := c.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull { // a long line: pass it on in pieces
		c.pending = append([]byte(nil), line...)
		return c.Read(p)
	}
	if len(line) > 0 {
		upper := bytes.ToUpper(line)
		if bytes.HasPrefix(upper, []byte("* CAPABILITY ")) || bytes.Contains(upper, []byte("[CAPABILITY ")) {
			line = capRev2.ReplaceAll(line, nil)
		}
		if m := literalEnd.FindSubmatch(line); m != nil {
			c.literal, _ = strconv.ParseInt(string(m[1]), 10, 64)
		}
		c.pending = append([]byte(nil), line...)
		return c.Read(p)
	}
	return 0, err
}

// dialIMAP connects over TLS, or plain with STARTTLS, and returns the
// connection ready for imapclient.New (the greeting still to be read).
func dialIMAP(addr string, cfg *tls.Config, starttls bool) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second}
	if !starttls {
		c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		return newRev1Conn(c, nil), nil
	}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(raw)
	greeting, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "* OK") {
		raw.Close()
		return nil, fmt.Errorf("IMAP greeting %q: %v", greeting, err)
	}
	if _, err := raw.Write([]byte("S1 STARTTLS\r\n")); err != nil {
		raw.Close()
		return nil, err
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			raw.Close()
			return nil, err
		}
		if strings.HasPrefix(line, "S1 ") {
			if !strings.HasPrefix(strings.ToUpper(line), "S1 OK") {
				raw.Close()
				return nil, fmt.Errorf("STARTTLS refused: %s", strings.TrimSpace(line))
			}
			break
		}
	}
	if br.Buffered() > 0 { // nothing may come before the handshake
		raw.Close()
		return nil, fmt.Errorf("STARTTLS: data before the TLS handshake")
	}
	raw.SetDeadline(time.Time{})
	c := tls.Client(raw, cfg)
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	// imapclient reads a greeting first: the (capability-less) original.
	return newRev1Conn(c, []byte("* OK STARTTLS done\r\n")), nil
}
