package imapconn

import (
	"bytes"
	"compress/flate"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	kflate "github.com/klauspost/compress/flate"
)

// fakeNetConn reads from r and discards what is written.
type fakeNetConn struct{ r io.Reader }

func (f *fakeNetConn) Read(p []byte) (int, error)       { return f.r.Read(p) }
func (f *fakeNetConn) Write(p []byte) (int, error)      { return len(p), nil }
func (f *fakeNetConn) Close() error                     { return nil }
func (f *fakeNetConn) LocalAddr() net.Addr              { return nil }
func (f *fakeNetConn) RemoteAddr() net.Addr             { return nil }
func (f *fakeNetConn) SetDeadline(time.Time) error      { return nil }
func (f *fakeNetConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeNetConn) SetWriteDeadline(time.Time) error { return nil }

// deflated is a client's command, compressed and sync-flushed.
func deflated(t testing.TB, s string) []byte {
	var buf bytes.Buffer
	zw, _ := flate.NewWriter(&buf, flate.DefaultCompression)
	zw.Write([]byte(s))
	if err := zw.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// idleConnBytes is the heap a connection holds once it has read one
// command and answered it, per connection, over n connections; layer
// puts the connection's compression on (nil: none).
func idleConnBytes(b *testing.B, n int, layer func(c *Conn)) float64 {
	in := deflated(b, "a2 NOOP\r\n")
	srv := NewServer(Options{})
	conns := make([]*Conn, n)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range conns {
		c := newConn(srv, &fakeNetConn{r: bytes.NewReader(in)})
		if layer != nil {
			layer(c)
		}
		if layer != nil {
			if _, err := c.br.ReadString('\n'); err != nil {
				b.Fatal(err)
			}
		}
		c.enc.StatusResponse("a2", "OK", "", nil, "NOOP completed")
		if err := c.flush(); err != nil {
			b.Fatal(err)
		}
		conns[i] = c
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(conns)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// BenchmarkIdleConnMemory reports the heap of an idle connection: plain,
// with COMPRESS=DEFLATE as served (stateless deflater, the inflater and its
// 32 KiB window kept), and for comparison with compress/flate's writer at
// level 1 kept per connection instead of the stateless one.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 200
	for range b.N {
		plain := idleConnBytes(b, n, nil)
		served := idleConnBytes(b, n, func(c *Conn) {
			c.setCodec(newInflater(c.br), kflate.NewStatelessWriter(c.nc))
		})
		level1 := idleConnBytes(b, n, func(c *Conn) {
			zw, _ := flate.NewWriter(c.nc, flate.BestSpeed)
			c.setCodec(newInflater(c.br), zw)
		})
		b.ReportMetric(plain, "B/plain-idle-conn")
		b.ReportMetric(served, "B/deflate-idle-conn")
		b.ReportMetric(level1, "B/flate-level1-idle-conn")
	}
}
