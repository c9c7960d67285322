// Package testport hands out loopback TCP ports for servers that tests start
// as separate processes, without the races of asking the kernel for port 0.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Free returns a TCP port on 127.0.0.1 for a server the test is about to
// start. Asking the kernel for port 0 is not enough: between closing the
// probe and the server binding it, the port can be taken by another test
// process (go test runs packages in parallel) or become the local port of an
// outgoing connection. So ports come from below the kernel's ephemeral range,
// where outgoing connections never land, and each one is reserved with a
// marker file shared by every test process on the machine for a few minutes.
func Free() (int, error) {
	lo, hi := reservablePortRange()
	dir := filepath.Join(os.TempDir(), "mailfleet-test-ports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	for range 200 {
		port := lo + rand.IntN(hi-lo)
		if !reservePort(dir, port) {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // in use by something that does not reserve
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port found in %d-%d", lo, hi)
}

// portReservation is how long a reserved port stays out of other tests' hands.
const portReservation = 10 * time.Minute

// reservePort creates the marker file for port, replacing one that expired.
func reservePort(dir string, port int) bool {
	marker := filepath.Join(dir, fmt.Sprint(port))
	for range 2 {
		f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			f.Close()
			return true
		}
		st, statErr := os.Stat(marker)
		if statErr != nil || time.Since(st.ModTime()) < portReservation {
			return false
		}
		os.Remove(marker) // expired; a racing process may win the retry instead
	}
	return false
}

// reservablePortRange is the range below the kernel's ephemeral ports
// (net.ipv4.ip_local_port_range), or a fixed range if that cannot be read.
func reservablePortRange() (lo, hi int) {
	lo, hi = 20000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	var ephLo, ephHi int
	if _, err := fmt.Sscan(string(b), &ephLo, &ephHi); err != nil {
		return lo, hi
	}
	if ephLo-10000 >= 1024 {
		return ephLo - 10000, ephLo
	}
	return ephHi + 1, min(ephHi+10001, 65536)
}
