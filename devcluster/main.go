// Command mailfleet-dev runs a whole Mailfleet on one machine for
// development: embedded etcd, the fs body store, and one process of each
// tier on loopback. `make run` starts it.
package main

import (
	"os"

	"github.com/mailfleet/mailfleet/devcluster/internal/devrun"
)

func main() { os.Exit(devrun.Main(os.Args[1:])) }
