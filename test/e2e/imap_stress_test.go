package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/stress"
)

// stressDuration is how long each stress scenario runs: def unless
// MAILFLEET_STRESS_DURATION says otherwise.
func stressDuration(tb testing.TB, def time.Duration) time.Duration {
	s := os.Getenv("MAILFLEET_STRESS_DURATION")
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		tb.Fatalf("MAILFLEET_STRESS_DURATION: %v", err)
	}
	return d
}

func stressSeed(tb testing.TB) uint64 {
	seed := rand.Uint64()
	if s := os.Getenv("MAILFLEET_STRESS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			tb.Fatalf("MAILFLEET_STRESS_SEED: %v", err)
		}
	}
	tb.Logf("seed %d (replay: MAILFLEET_STRESS_SEED=%d)", seed, seed)
	return seed
}

// runStress runs one scenario of the stress tool (test/stress) on the
// cluster's access pods with the given users, and returns its result.
func runStress(tb testing.TB, c *cluster.Cluster, users []stress.User, clients int, d time.Duration, seed uint64) *stress.Result {
	tb.Helper()
	var addrs []string
	for _, a := range c.Access {
		addrs = append(addrs, a.IMAPS)
	}
	res, err := stress.Run(context.Background(), stress.Config{Addrs: addrs, Users: users, Clients: clients,
		Duration: d, Seed: seed, TLS: insecureTLS()})
	if err != nil {
		tb.Fatal(err)
	}
	var b strings.Builder
	res.Report(&b)
	tb.Log("\n" + b.String())
	return res
}

func stressUsers(c *cluster.Cluster, prefix string, n int) []stress.User {
	var users []stress.User
	for i := range n {
		u := stress.User{Name: fmt.Sprintf("%s%d@example.test", prefix, i), Password: "stress-secret-" + strconv.Itoa(i)}
		c.CreateAccount(u.Name, u.Password)
		users = append(users, u)
	}
	return users
}

// TestIMAPStress: many devices of one user, and many users, at once on
// two access pods with the chart's default limits. Every client checks
// every response against the mailbox it must see (sequence numbers, UIDs,
// flags, EXISTS/EXPUNGE/VANISHED, MODSEQ, bodies); any inconsistency, any
// command without an answer within a minute and any server fault fails
// the test. Longer runs: MAILFLEET_STRESS_DURATION (and make bench).
func TestIMAPStress(t *testing.T) {
	d := stressDuration(t, 20*time.Second)
	seed := stressSeed(t)
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	for _, sc := range []struct {
		name           string
		clients, users int
	}{
		{"10-clients-1-user", 10, 1},
		{"30-clients-6-users", 30, 6},
	} {
		t.Run(sc.name, func(t *testing.T) {
			res := runStress(t, c, stressUsers(c, sc.name+"-", sc.users), sc.clients, d, seed)
			if res.Failed() {
				t.Errorf("%d inconsistencies, %d hung sessions, %d server faults (see above)",
					res.Counts[stress.KindInconsistent], res.Counts[stress.KindHung], res.Counts[stress.KindServerBug])
			}
			if res.Total < sc.clients*10 {
				t.Errorf("only %d commands in %v: the clients did not get to work", res.Total, d)
			}
		})
	}
}

// BenchmarkIMAPStress prints the stress tool's figures for 10 clients on
// one user and 50 clients on 10 users across two access pods, 5 minutes
// each (MAILFLEET_STRESS_DURATION to change). It fails on any failure the
// tool records, like the test.
func BenchmarkIMAPStress(b *testing.B) {
	d := stressDuration(b, 5*time.Minute)
	seed := stressSeed(b)
	c := cluster.Start(b, binDir, minioServer, cluster.Options{Access: 2})
	for _, sc := range []struct {
		name           string
		clients, users int
	}{
		{"10-clients-1-user", 10, 1},
		{"50-clients-10-users", 50, 10},
	} {
		b.Run(sc.name, func(b *testing.B) {
			res := runStress(b, c, stressUsers(c, fmt.Sprintf("%s-%d-", sc.name, b.N), sc.users), sc.clients, d, seed)
			if res.Failed() {
				b.Errorf("%d inconsistencies, %d hung sessions, %d server faults (see above)",
					res.Counts[stress.KindInconsistent], res.Counts[stress.KindHung], res.Counts[stress.KindServerBug])
			}
			b.ReportMetric(float64(res.Total)/res.Elapsed.Seconds(), "cmds/s")
			for _, cs := range res.Commands {
				if cs.Name == "APPEND" {
					b.ReportMetric(cs.PerSecond, "appends/s")
				}
			}
		})
	}
}

// BenchmarkIMAPStressBigMailbox runs the stress tool's 10 devices of one
// user on two access pods against an INBOX of 100 000 corpus messages
// (MAILFLEET_BENCH_MESSAGES to change; many recipients, MIME, attachments,
// broken headers), 3 minutes by default (MAILFLEET_STRESS_DURATION). The
// messages carry the tool's checksum headers, so every body, envelope and
// structure fetched from the large mailbox is checked as the small runs'
// are; every SELECT fetches the flags of all of them. It fails on any
// failure the tool records.
func BenchmarkIMAPStressBigMailbox(b *testing.B) {
	n := benchMessages(b, 100000)
	d := stressDuration(b, 3*time.Minute)
	seed := stressSeed(b)
	c := cluster.Start(b, binDir, minioServer, cluster.Options{Access: 2})
	users := stressUsers(c, fmt.Sprintf("big-%d-", b.N), 1)
	start := time.Now()
	bmbFillWith(b, c, users[0].Name, n, func(i int, msg []byte) []byte { return stress.Tagged(fmt.Sprintf("fill-%d", i), msg) })
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s-fill")
	b.ResetTimer()
	res := runStress(b, c, users, 10, d, seed)
	if res.Failed() {
		b.Errorf("%d inconsistencies, %d hung sessions, %d server faults (see above)",
			res.Counts[stress.KindInconsistent], res.Counts[stress.KindHung], res.Counts[stress.KindServerBug])
	}
	b.ReportMetric(float64(res.Total)/res.Elapsed.Seconds(), "cmds/s")
}
