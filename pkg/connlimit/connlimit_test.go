package connlimit

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/pkg/ratelimit"
)

func TestLimitPerAddress(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Wrap(raw, 2, "BUSY\r\n")
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := dial(), dial()
	defer a.Close()
	defer b.Close()
	first := <-accepted
	<-accepted
	refused := dial()
	refused.SetReadDeadline(time.Now().Add(5 * time.Second))
	msg, _ := io.ReadAll(refused)
	if string(msg) != "BUSY\r\n" {
		t.Fatalf("third connection got %q", msg)
	}
	// Closing one frees a place.
	first.Close()
	time.Sleep(50 * time.Millisecond)
	c := dial()
	defer c.Close()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no place freed after a close")
	}
}

// Over its connection rate, a client is told why in the protocol's words and closed.
func TestListenerRefusesOverTheRate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var refused atomic.Int32
	rl := Wrap(ln, 100, "421 4.7.0 busy\r\n")
	rl.Rate, rl.RateRefusal, rl.OnRateRefuse = ratelimit.New(2), "421 4.7.0 slow down\r\n", func() { refused.Add(1) }
	go func() {
		for {
			c, err := rl.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("220 welcome\r\n"))
			c.Close()
		}
	}()
	var greetings []string
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		greetings = append(greetings, strings.TrimSpace(line))
	}
	if greetings[0] != "220 welcome" || greetings[1] != "220 welcome" || greetings[2] != "421 4.7.0 slow down" {
		t.Fatalf("greetings %q", greetings)
	}
	if n := refused.Load(); n != 1 {
		t.Fatalf("OnRefuse called %d times", n)
	}
}

// The total bounds the connections of every address together: clients from
// three loopback addresses share a total of 3, the fourth is refused with
// the busy text, and a closed connection frees its place.
func TestLimitInTotal(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := New(10)
	lim.MaxTotal = 3
	ln := lim.Wrap(raw, "FROM YOUR ADDRESS\r\n")
	ln.BusyRefusal = "SERVER BUSY\r\n"
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dialFrom := func(ip string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var servers []net.Conn
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		defer dialFrom(ip).Close()
		servers = append(servers, <-accepted)
	}
	fourth := dialFrom("127.0.0.5")
	fourth.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, _ := bufio.NewReader(fourth).ReadString('\n'); line != "SERVER BUSY\r\n" {
		t.Fatalf("fourth connection got %q, want the busy refusal", line)
	}
	if n := lim.Open(); n != 3 {
		t.Fatalf("%d connections counted, want 3", n)
	}
	servers[0].Close()
	if n := lim.Open(); n != 2 {
		t.Fatalf("%d connections counted after one closed, want 2", n)
	}
	defer dialFrom("127.0.0.5").Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a connection under the total was not accepted")
	}
}
