package testport

import (
	"fmt"
	"net"
	"testing"
)

// Ports handed out are distinct, bindable and never in the kernel's
// ephemeral range, where an outgoing connection could take them.
func TestFreeHandsOutDistinctBindablePorts(t *testing.T) {
	lo, hi := reservablePortRange()
	seen := map[int]bool{}
	for range 50 {
		p, err := Free()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p < lo || p >= hi {
			t.Fatalf("port %d outside %d-%d", p, lo, hi)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		l.Close()
	}
}

// A reservation made by one process keeps the port from every other.
func TestReservedPortIsNotReservedAgain(t *testing.T) {
	dir := t.TempDir()
	if !reservePort(dir, 25000) {
		t.Fatal("first reservation refused")
	}
	if reservePort(dir, 25000) {
		t.Fatal("a reserved port was reserved again")
	}
}
