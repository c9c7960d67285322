package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/pkg/mailcorpus"
	"github.com/mailfleet/mailfleet/test/cluster"
)

// BenchmarkMailctlImportMaildir imports a Maildir of 10 000 corpus
// messages (MIME, attachments, broken headers; about 630 MB;
// MAILFLEET_BENCH_MESSAGES changes the count) with mailctl into an empty
// account of a cluster (etcd, MinIO, one storage process) and reports
// messages/s and MB/s. The Maildir is generated into a temp dir first,
// outside the timing. Run: go test ./test/e2e -run '^$' -bench MailctlImportMaildir -benchtime 1x
func BenchmarkMailctlImportMaildir(b *testing.B) {
	n := 10000
	if v := os.Getenv("MAILFLEET_BENCH_MESSAGES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	root := filepath.Join(b.TempDir(), "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	gen := mailcorpus.New(1)
	flags := []string{"S", "RS", "", "FS", "PS", "aS"}
	if err := os.WriteFile(filepath.Join(root, "dovecot-keywords"), []byte("0 $Label1\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	var total int64
	start := time.Date(2016, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		date := start.Add(time.Duration(i) * time.Minute)
		body := gen.Message(i)
		total += int64(len(body))
		name := fmt.Sprintf("%d.M%dP1.bench,S=%d:2,%s", date.Unix(), i, len(body), flags[i%len(flags)])
		if err := os.WriteFile(filepath.Join(root, "cur", name), body, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	c := cluster.Start(b, binDir, minioServer, cluster.Options{})
	b.ResetTimer()
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		address := fmt.Sprintf("bench%d@corp.test", i)
		acc := c.CreateAccount(address, "bench-import-pw")
		t0 := time.Now()
		cmd := mailctlCommand(c, c.Storage[0].Addr, "import", address, "--maildir", root)
		out, err := cmd.CombinedOutput()
		elapsed += time.Since(t0)
		if err != nil || !strings.Contains(string(out), fmt.Sprintf("%d messages imported", n)) {
			b.Fatalf("mailctl import: %v\n%s", err, out)
		}
		b.StopTimer()
		if got := len(c.InboxUIDs(acc.Id)); got != min(n, 5000) { // one page of at most 5000
			b.Fatalf("INBOX has %d messages (first page), want %d", got, min(n, 5000))
		}
		b.StartTimer()
	}
	secs := elapsed.Seconds() / float64(b.N)
	b.ReportMetric(float64(n)/secs, "messages/s")
	b.ReportMetric(float64(total)/(1<<20)/secs, "MB/s")
	b.Logf("imported %d messages (%d MB) in %.1f s: %.0f messages/s, %.1f MB/s",
		n, total>>20, secs, float64(n)/secs, float64(total)/(1<<20)/secs)

	// Then the cell holding that account is backed up, restored into a new
	// empty cell, and checked there (the README's procedure).
	b.StopTimer()
	dir := filepath.Join(b.TempDir(), "backup")
	backup := timed(b, mailctlCommand(c, c.Storage[0].Addr, "backup", dir))
	dst := cluster.Start(b, binDir, minioServer, cluster.Options{})
	restore := timed(b, mailctlCommand(dst, dst.Storage[0].Addr, "restore", dir))
	fsck := timed(b, mailctlCommand(dst, dst.Storage[0].Addr, "fsck"))
	b.ReportMetric(backup.Seconds(), "backup-s")
	b.ReportMetric(restore.Seconds(), "restore-s")
	b.ReportMetric(fsck.Seconds(), "fsck-s")
	b.Logf("cell of %d messages (%d MB): backup %.1f s, restore into an empty cell %.1f s, fsck %.1f s",
		n*b.N, total*int64(b.N)>>20, backup.Seconds(), restore.Seconds(), fsck.Seconds())
}

// timed runs cmd, failing b if it fails, and returns how long it took.
func timed(b *testing.B, cmd *exec.Cmd) time.Duration {
	b.Helper()
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	b.Logf("%s", strings.TrimSpace(string(out)))
	return time.Since(t0)
}
