// Command mailfleet-stress runs the IMAP stress tool (package stress)
// against a running Mailfleet and prints its figures; it exits 1 if any
// client saw an inconsistency, a hung session or a server fault.
//
// Against make run (whose certificate is self-signed; --ca trusts it):
//
//	go run ./test/stress/cmd/mailfleet-stress --addr 127.0.0.1:9930 \
//	    --ca .mailfleet/tls/cert.pem --user demo@example.test:$(cat .mailfleet/demo-password) --clients 10 --duration 1m
//
// The users must exist; every client works in their INBOX and Archive
// (created if missing), appending, changing and expunging mail there.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/mailfleet/mailfleet/test/stress"
)

type userList []stress.User

func (u *userList) String() string { return fmt.Sprint(len(*u), " users") }

func (u *userList) Set(s string) error {
	name, pass, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return fmt.Errorf("want address:password")
	}
	*u = append(*u, stress.User{Name: name, Password: pass})
	return nil
}

func main() {
	var users userList
	addrs := flag.String("addr", "127.0.0.1:993", "IMAPS addresses of the access pods, comma-separated (clients are spread over them)")
	flag.Var(&users, "user", "an account as address:password (repeat for several users)")
	clients := flag.Int("clients", 10, "simultaneous sessions")
	duration := flag.Duration("duration", time.Minute, "how long to run")
	seed := flag.Uint64("seed", rand.Uint64(), "random seed (printed, to replay a run)")
	timeout := flag.Duration("command-timeout", time.Minute, "a command without an answer by then is a hung session")
	caFile := flag.String("ca", "", "PEM file of the CA that signed the server certificate (default: the system's)")
	insecure := flag.Bool("insecure-skip-verify", false, "INSECURE: do not verify the server certificate")
	flag.Parse()
	if len(users) == 0 {
		fmt.Fprintln(os.Stderr, "mailfleet-stress: at least one --user address:password")
		os.Exit(2)
	}
	tlsConfig := &tls.Config{InsecureSkipVerify: *insecure}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mailfleet-stress:", err)
			os.Exit(2)
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		if !tlsConfig.RootCAs.AppendCertsFromPEM(pem) {
			fmt.Fprintln(os.Stderr, "mailfleet-stress: no certificate in", *caFile)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fmt.Printf("seed %d\n", *seed)
	res, err := stress.Run(ctx, stress.Config{Addrs: strings.Split(*addrs, ","), Users: users, Clients: *clients,
		Duration: *duration, Seed: *seed, CommandTimeout: *timeout, TLS: tlsConfig})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	res.Report(os.Stdout)
	if res.Failed() {
		os.Exit(1)
	}
}
