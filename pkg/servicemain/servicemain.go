// Package servicemain is the shared main of every Mailfleet binary: flags
// (also from MAILFLEET_* environment variables), a JSON logger, and a
// context that ends on SIGINT or SIGTERM for graceful shutdown.
package servicemain

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailfleet/mailfleet/pkg/flagenv"
	"github.com/mailfleet/mailfleet/pkg/logging"
)

// Main parses the command line into fs (whose flags the caller registered),
// adds --log-level, and calls run until it returns; it exits 1 if run fails
// and 2 on bad flags.
func Main(name string, fs *flag.FlagSet, run func(ctx context.Context, log *slog.Logger) error) {
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := flagenv.Parse(fs, "MAILFLEET", os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log, err := logging.New(os.Stderr, *level, name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log); err != nil {
		log.Error(name+" failed", "err", err)
		stop()
		os.Exit(1)
	}
}
