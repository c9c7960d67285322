package e2e

import (
	"bufio"
	"compress/flate"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// deflateConn is a client's side of COMPRESS=DEFLATE (RFC 4978): what is
// written is raw deflate, sync-flushed after each write; what is read is
// inflated. wire counts the octets read from the connection.
type deflateConn struct {
	net.Conn
	zw   *flate.Writer
	zr   io.ReadCloser
	wire atomic.Int64
}

func (d *deflateConn) Write(p []byte) (int, error) {
	n, err := d.zw.Write(p)
	if err == nil {
		err = d.zw.Flush()
	}
	return n, err
}

func (d *deflateConn) Read(p []byte) (int, error) { return d.zr.Read(p) }

// countingReader counts what the inflater reads from below.
type countingReader struct {
	r *bufio.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n.Add(1)
	}
	return b, err
}

// compress runs COMPRESS DEFLATE and puts the client's deflate layer on.
func (c *rawIMAP) compress() *deflateConn {
	c.t.Helper()
	c.expect("COMPRESS DEFLATE", "OK")
	zw, err := flate.NewWriter(c.conn, flate.DefaultCompression)
	if err != nil {
		c.t.Fatal(err)
	}
	d := &deflateConn{Conn: c.conn, zw: zw}
	// What the server sent after its OK is compressed, and may be in c.r.
	d.zr = flate.NewReader(countingReader{r: c.r, n: &d.wire})
	c.conn, c.r = d, bufio.NewReader(d)
	return d
}

// COMPRESS=DEFLATE (RFC 4978): announced after login; after "COMPRESS
// DEFLATE" and its OK both directions are raw deflate (section 3); a
// second COMPRESS is NO [COMPRESSIONACTIVE] (section 3); an unknown
// mechanism is BAD. Responses and IDLE updates arrive whole, each flushed
// (section 4: the server flushes at the end of each response burst).
func TestIMAPCompressDeflate(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("zip@example.test", "zip-secret")
	r := rawDial(t, c.Access[0].IMAPS, true)
	if caps := strings.Join(r.expect("CAPABILITY", "OK"), " "); strings.Contains(caps, "COMPRESS") {
		t.Errorf("COMPRESS announced before login: %s", caps)
	}
	r.expect("COMPRESS DEFLATE", "BAD") // not authenticated
	r.expect("LOGIN zip@example.test zip-secret", "OK")
	if caps := strings.Join(r.expect("CAPABILITY", "OK"), " "); !strings.Contains(caps+" ", " COMPRESS=DEFLATE ") {
		t.Fatalf("CAPABILITY after login lacks COMPRESS=DEFLATE: %s", caps)
	}
	r.expect("COMPRESS LZW", "BAD")
	r.expect("COMPRESS", "BAD")
	d := r.compress()

	r.expect("NOOP", "OK")
	if caps := strings.Join(r.expect("CAPABILITY", "OK"), " "); !strings.Contains(caps, "IMAP4rev2") {
		t.Fatalf("CAPABILITY through compression: %s", caps)
	}
	r.expect("COMPRESS DEFLATE", "NO [COMPRESSIONACTIVE]")
	r.expect("SELECT INBOX", "OK")

	// A large, compressible message there and back.
	var body strings.Builder
	for i := 0; body.Len() < 200<<10; i++ {
		fmt.Fprintf(&body, "line %d of a long and very repetitive message body\r\n", i)
	}
	msg := "From: a@x.example\r\nSubject: big\r\n\r\n" + body.String()
	r.expect(fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(msg), msg), "OK")
	before := d.wire.Load()
	r.n++
	tag := fmt.Sprintf("t%d", r.n)
	fmt.Fprintf(r.conn, "%s FETCH 1 BODY.PEEK[]\r\n", tag)
	head := r.line()
	if want := fmt.Sprintf("BODY[] {%d}", len(msg)); !strings.HasPrefix(head, "* 1 FETCH (") || !strings.HasSuffix(head, want) {
		t.Fatalf("FETCH: %q, want %q", head, want)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(r.r, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatal("FETCH BODY[] through compression differs from the message appended")
	}
	if l := r.line(); l != ")" {
		t.Fatalf("after the literal: %q", l)
	}
	if l := r.line(); !strings.HasPrefix(l, tag+" OK") {
		t.Fatalf("FETCH status: %q", l)
	}
	if wire := d.wire.Load() - before; wire > int64(len(msg))/4 {
		t.Errorf("FETCH of %d octets took %d octets on the wire: not compressed", len(msg), wire)
	}

	// IDLE: the continuation and a delivery's EXISTS arrive through the
	// compression layer while the server waits for DONE.
	r.n++
	tag = fmt.Sprintf("t%d", r.n)
	fmt.Fprintf(r.conn, "%s IDLE\r\n", tag)
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	c.Deliver([]string{"zip@example.test"}, []byte("From: b@x.example\r\nSubject: pushed\r\n\r\nhello\r\n"))
	for {
		l := r.line()
		if l == "* 2 EXISTS" {
			break
		}
		if !strings.HasPrefix(l, "* ") {
			t.Fatalf("during IDLE: %q", l)
		}
	}
	fmt.Fprintf(r.conn, "DONE\r\n")
	for {
		l := r.line() // other updates (RECENT) may come before the OK
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				t.Fatalf("IDLE end: %q", l)
			}
			break
		}
		if !strings.HasPrefix(l, "* ") {
			t.Fatalf("after DONE: %q", l)
		}
	}
	if l := r.expectOne("FETCH 2 (FLAGS)", "OK"); !strings.HasPrefix(l, "* 2 FETCH") {
		t.Fatalf("FETCH after IDLE: %q", l)
	}
	if l := r.expect("LOGOUT", "OK"); len(l) != 1 || !strings.HasPrefix(l[0], "* BYE") {
		t.Fatalf("LOGOUT: %q", l)
	}
}
