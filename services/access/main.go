// Command access is a Mailfleet frontend. It is a placeholder until its issue
// lands: it exits with a clear message instead of pretending to serve.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "access: not implemented yet (see the issue tracker)")
	os.Exit(1)
}
