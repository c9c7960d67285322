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
