//go:build unix

package mailcorpus

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time the process has used, so that a benchmark on a
// shared machine can report its rate per CPU-second, not per wall second.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
