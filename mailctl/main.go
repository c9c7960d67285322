// Command mailctl administers Mailfleet through the storage API: domains,
// accounts, aliases, quotas and the outbound queue.
package main

import (
	"os"

	"github.com/mailfleet/mailfleet/mailctl/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
