package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/dnstest"
)

// BenchmarkInboundSMTPSource runs Postfix's load generator, smtp-source
// (installed by hack/install-postfix-tools.sh, no Postfix daemon left
// running), against the MX: 20 parallel sessions, one 10 KiB message per
// connection, MAILFLEET_BENCH_SMTP_MESSAGES messages (default 2000) to one
// mailbox, SPF and DMARC looked up on a loopback DNS server. It prints
// accepted msg/s (every 250 received, smtp-source's wall time) and stored
// msg/s (until every message is visible in the mailbox through the storage
// API), once per body store: "fs" (bodies in local files, as a single-node
// install and `make run` keep them: the like-for-like comparison with
// Postfix and Dovecot, which keep mail in local files too) and "s3" (MinIO,
// as in a cluster, here on the same two cores). MAILFLEET_BENCH_PPROF=FILE
// also writes CPU profiles of the inbound process (FILE) and the storage
// process (FILE.storage) over the run. hack/bench-postfix-dovecot.sh
// measures the same run against Postfix delivering to Dovecot over LMTP.
func BenchmarkInboundSMTPSource(b *testing.B) {
	b.Run("fs", func(b *testing.B) {
		// The harness passes --blob-driver s3; StorageArgs come after it and
		// the last flag wins.
		benchSMTPSource(b, "fs", "--blob-driver", "fs", "--fs-dir", filepath.Join(b.TempDir(), "bodies"))
	})
	b.Run("s3", func(b *testing.B) { benchSMTPSource(b, "s3 (MinIO)") })
}

func benchSMTPSource(b *testing.B, store string, storageArgs ...string) {
	out, err := exec.Command(filepath.Join("..", "..", "hack", "install-postfix-tools.sh")).Output()
	if err != nil {
		b.Fatalf("installing smtp-source: %v\n%s", err, out)
	}
	fields := strings.Fields(string(out))
	smtpSource := fields[len(fields)-1]
	messages := 2000
	if v := os.Getenv("MAILFLEET_BENCH_SMTP_MESSAGES"); v != "" {
		if messages, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	dns, err := dnstest.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer dns.Close()
	dns.TXT("example.org", "v=spf1 ip4:127.0.0.1 -all")
	dns.SOA("example.org", 300) // so that "no DMARC record" is cached, as on the Internet
	c := cluster.Start(b, binDir, minioServer, cluster.Options{Inbound: 1, DNS: dns.Addr,
		InboundArgs: []string{"--pprof"}, StorageArgs: append([]string{"--pprof"}, storageArgs...)})
	acc := c.CreateAccount("sink@example.test", "sink-secret-pw")

	var profile chan error
	if path := os.Getenv("MAILFLEET_BENCH_PPROF"); path != "" {
		profile = make(chan error, 2)
		storageOps := strings.TrimSuffix(strings.TrimPrefix(c.Storage[0].ReadyURL, "http://"), "/readyz")
		go func() { profile <- fetchProfile(c.Inbound[0].Ops, path, 15) }()
		go func() { profile <- fetchProfile(storageOps, path+".storage", 15) }()
	}
	start := time.Now()
	cmd := exec.Command(smtpSource, "-s", "20", "-l", "10240", "-m", strconv.Itoa(messages),
		"-f", "s@example.org", "-t", "sink@example.test", "-M", "bench.example.org", c.Inbound[0].SMTP)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		b.Fatalf("smtp-source: %v\n%s", err, out)
	}
	accepted := time.Since(start)
	stored := waitStored(b, c, acc.Id, messages, start)
	b.ReportMetric(float64(messages)/accepted.Seconds(), "accepted-msgs/s")
	b.ReportMetric(float64(messages)/stored.Seconds(), "stored-msgs/s")
	fmt.Printf("smtp-source -s 20 -l 10240 -m %d against the MX, bodies on %s: accepted %.0f msg/s, stored %.0f msg/s\n",
		messages, store, float64(messages)/accepted.Seconds(), float64(messages)/stored.Seconds())
	if profile != nil {
		for range 2 {
			if err := <-profile; err != nil {
				b.Error(err)
			}
		}
	}
}

// waitStored waits until the mailbox holds want messages and returns the
// time since start.
func waitStored(b *testing.B, c *cluster.Cluster, account string, want int, start time.Time) time.Duration {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		mb, err := c.Mailbox.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: account, Name: "INBOX"})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if int(mb.Mailbox.Messages) >= want {
			return time.Since(start)
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("%d of %d messages stored after 5 minutes", mb.Mailbox.Messages, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fetchProfile writes a CPU profile of seconds from an ops port's pprof.
func fetchProfile(ops, path string, seconds int) error {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", ops, seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}
