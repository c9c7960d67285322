package timeoutconn

import (
	"bufio"
	"errors"
	"net"
	"net/textproto"
	"os"
	"testing"
	"time"
)

// Through bufio and net/textproto (what go-smtp uses), a line still
// incomplete at its deadline comes back as a whole line; behind Conn the
// timeout is then known, and every later read times out at once, however
// far the next deadline is.
func TestTimeoutIsFinal(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	conn := &Conn{Conn: server}
	r := textproto.NewReader(bufio.NewReader(conn))
	go client.Write([]byte("EHLO dri")) // no CRLF: the rest never comes in time

	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	line, err := r.ReadLine()
	if err == nil && line == "EHLO dri" && !conn.TimedOut() {
		t.Fatal("a fragment came back as a line with no timeout recorded")
	}
	if !conn.TimedOut() || !TimedOut(conn) {
		t.Fatalf("timeout not recorded (line %q, err %v)", line, err)
	}
	go client.Write([]byte("ve.example\r\n"))
	conn.SetReadDeadline(time.Now().Add(time.Hour))
	if _, err := conn.Read(make([]byte, 16)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after the timeout: %v, want a timeout", err)
	}
	var ne net.Error
	if _, err := r.ReadLine(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("next line: %v, want a timeout", err)
	}
}

// A connection whose reads never time out is never reported.
func TestNoTimeout(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	conn := &Conn{Conn: server}
	go client.Write([]byte("NOOP\r\n"))
	if line, err := textproto.NewReader(bufio.NewReader(conn)).ReadLine(); err != nil || line != "NOOP" || TimedOut(conn) {
		t.Fatalf("%q %v timed out: %v", line, err, TimedOut(conn))
	}
}
