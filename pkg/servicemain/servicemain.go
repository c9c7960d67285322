// Package servicemain is the shared main of every Mailfleet binary: flags
// (also from MAILFLEET_* environment variables), a JSON logger, and a
// context that ends on SIGINT or SIGTERM for graceful shutdown — after
// --shutdown-delay, during which the process reports not ready but keeps
// serving, so that a Service has stopped routing to it before its
// listeners close.
package servicemain

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mailfleet/mailfleet/pkg/flagenv"
	"github.com/mailfleet/mailfleet/pkg/logging"
	"github.com/mailfleet/mailfleet/pkg/opsserver"
)

// Main parses the command line into fs (whose flags the caller registered),
// adds --log-level and --shutdown-delay, and calls run until it returns; it
// exits 1 if run fails and 2 on bad flags.
func Main(name string, fs *flag.FlagSet, run func(ctx context.Context, log *slog.Logger) error) {
	level := fs.String("log-level", "info", "debug, info, warn or error")
	delay := fs.Duration("shutdown-delay", 0, "after SIGTERM, keep serving this long while /readyz fails (a second signal ends it)")
	if err := flagenv.Parse(fs, "MAILFLEET", os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log, err := logging.New(os.Stderr, *level, name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-signals
		opsserver.Drain()
		if *delay > 0 {
			log.Info("stopping: not ready from now, serving on for the shutdown delay", "signal", sig.String(), "delay", delay.String())
			select {
			case <-time.After(*delay):
			case <-signals:
			}
		}
		stop()
	}()
	if err := run(ctx, log); err != nil {
		log.Error(name+" failed", "err", err)
		stop()
		os.Exit(1)
	}
}
