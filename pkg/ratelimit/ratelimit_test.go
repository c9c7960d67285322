package ratelimit

import (
	"testing"
	"time"
)

// A minute's worth at once, then refusals, per address; refills over time.
func TestAllowPerKey(t *testing.T) {
	l := New(60)
	for i := range 60 {
		if !l.Allow("192.0.2.1") {
			t.Fatalf("event %d refused within the burst", i+1)
		}
	}
	if l.Allow("192.0.2.1") {
		t.Fatal("61st event in a minute allowed")
	}
	if !l.Allow("192.0.2.2") {
		t.Fatal("another address was limited too")
	}
	time.Sleep(1100 * time.Millisecond) // 60/min refills one per second
	if !l.Allow("192.0.2.1") {
		t.Fatal("no refill after a second")
	}
	if l.Allow("192.0.2.1") {
		t.Fatal("more than the refill allowed")
	}
}

func TestZeroMeansNoLimit(t *testing.T) {
	l := New(0)
	for range 10_000 {
		if !l.Allow("192.0.2.1") {
			t.Fatal("refused without a limit")
		}
	}
}

// Quiet addresses are forgotten, so memory follows the active clients.
func TestIdleAddressesAreDropped(t *testing.T) {
	l := New(6000) // refills 100 per second
	l.Allow("192.0.2.1")
	time.Sleep(50 * time.Millisecond)
	l.lastSweep = time.Now().Add(-2 * time.Minute)
	l.Allow("192.0.2.2")
	if n := len(l.buckets); n != 1 {
		t.Fatalf("%d addresses tracked, want only the active one", n)
	}
}
