package connlimit

import (
	"io"
	"net"
	"testing"
	"time"
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
