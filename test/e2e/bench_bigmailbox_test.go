package e2e

// BenchmarkBigMailbox: the access tier on one large INBOX (100 000 messages
// by default), with the fs and the S3 (MinIO) body store. It prints figures;
// nothing here asserts a speed. The checks are of results only (message
// counts, expunged counts).
//
//	go test -run '^$' -bench BigMailbox -benchtime 1x ./test/e2e/
//	MAILFLEET_BENCH_MESSAGES=20000 go test -run '^$' -bench BigMailbox/fs -benchtime 1x ./test/e2e/
//
// Steps, each timed, with the access process's peak VmRSS (sampled every
// 100 ms) during the step:
//
//	fill          storage gRPC Deliver, 32 concurrent senders, mailcorpus messages (≤ 64 KiB)
//	select-cold   SELECT INBOX, first session of the account on the pod
//	select-warm   SELECT INBOX on a second connection
//	fetch-flags   FETCH 1:* (FLAGS)
//	fetch-env     FETCH 1:* (ENVELOPE)
//	fetch-bs      FETCH 1:* (BODYSTRUCTURE), or 1:10000 if a probe says 1:* would take > 3 min
//	fetch-*-cold  the same two after a restart of the storage process (its summary cache empty)
//	expunge-10k   STORE 1:10000 +FLAGS.SILENT (\Deleted) + EXPUNGE
//	expunge-rest  STORE 1:* +FLAGS.SILENT (\Deleted) + EXPUNGE

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailfleet/mailfleet/pkg/mailcorpus"
	"github.com/mailfleet/mailfleet/test/cluster"
)

const (
	bmbUser = "big100k@example.test"
	bmbPass = "big100k-secret"
	// bmbBodyStructureBudget is how long FETCH 1:* (BODYSTRUCTURE) may be
	// expected to take before the benchmark times 1:10000 instead.
	bmbBodyStructureBudget = 3 * time.Minute
)

func BenchmarkBigMailbox(b *testing.B) {
	n := benchMessages(b, 100000)
	b.Run("fs", func(b *testing.B) {
		// The harness passes --blob-driver s3; StorageArgs come after it and
		// the last flag wins.
		dir := filepath.Join(b.TempDir(), "bodies")
		bmbRun(b, n, []string{"--blob-driver", "fs", "--fs-dir", dir})
	})
	b.Run("s3", func(b *testing.B) { bmbRun(b, n, nil) })
}

// bmbStep is one timed step and what the access process held during it.
type bmbStep struct {
	name    string
	msgs    int
	took    time.Duration
	peakRSS int64 // KiB
	note    string
}

func bmbRun(b *testing.B, n int, storageArgs []string) {
	for i := 0; i < b.N; i++ {
		c := cluster.Start(b, binDir, minioServer, cluster.Options{Access: 1, AccessArgs: benchArgs, StorageArgs: storageArgs})
		c.CreateAccount(bmbUser, bmbPass)
		store := "s3 (MinIO)"
		if storageArgs != nil {
			store = "fs"
		}
		pid := bmbAccessPID(b, c)
		var steps []bmbStep
		step := func(name string, msgs int, f func() string) {
			b.Helper()
			stop := bmbSampleRSS(pid)
			start := time.Now()
			note := f()
			took := time.Since(start)
			steps = append(steps, bmbStep{name: name, msgs: msgs, took: took, peakRSS: stop(), note: note})
			b.ReportMetric(took.Seconds(), "s-"+name)
			if msgs > 0 && took > 0 {
				b.ReportMetric(float64(msgs)/took.Seconds(), "msgs/s-"+name)
			}
		}

		b.ResetTimer()
		var octets int64
		step("fill", n, func() string {
			octets = bmbFill(b, c, bmbUser, n)
			return ""
		})
		fillSecs := steps[0].took.Seconds()
		b.ReportMetric(float64(octets)/(1<<20)/fillSecs, "MiB/s-fill")
		rssAfterFill := bmbStatusKiB(pid, "VmRSS:")

		// (a) Cold SELECT: the first session of this account on the pod
		// (nothing has logged in as it yet); then a warm one on a second
		// connection.
		cold := bmbDial(b, c.Access[0].IMAPS)
		bmbLogin(b, cold, bmbUser, bmbPass)
		step("select-cold", n, func() string { bmbSelect(b, cold, n); return "" })
		cl := bmbDial(b, c.Access[0].IMAPS)
		bmbLogin(b, cl, bmbUser, bmbPass)
		step("select-warm", n, func() string { bmbSelect(b, cl, n); return "" })
		cold.Logout().Wait()
		cold.Close()

		all := imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}
		// (b), (c)
		step("fetch-flags", n, func() string {
			bmbFetch(b, cl, all, &imap.FetchOptions{Flags: true}, n)
			return ""
		})
		step("fetch-env", n, func() string {
			bmbFetch(b, cl, all, &imap.FetchOptions{Envelope: true}, n)
			return ""
		})

		// (d) BODYSTRUCTURE reads every body: probe the rate on the last
		// 1 000 messages, then fetch 1:* if that would fit the budget,
		// else 1:10000.
		probe := min(1000, n)
		step("fetch-bs-probe", probe, func() string {
			return bmbFetchBodyStructure(b, &cl, c.Access[0].IMAPS, n, n-probe+1, n)
		})
		probeRate := float64(probe) / steps[len(steps)-1].took.Seconds()
		estimate := time.Duration(float64(n) / probeRate * float64(time.Second))
		bsN := n
		bsNote := fmt.Sprintf("1:* (probe estimated %s)", estimate.Round(time.Second))
		if estimate > bmbBodyStructureBudget {
			bsN = min(10000, n)
			bsNote = fmt.Sprintf("1:%d ONLY: probe estimated %s for 1:*", bsN, estimate.Round(time.Second))
		}
		step("fetch-bs", bsN, func() string {
			return bsNote + "; " + bmbFetchBodyStructure(b, &cl, c.Access[0].IMAPS, n, 1, bsN)
		})

		// (d') ENVELOPE and BODYSTRUCTURE again with the storage tier's
		// summary cache cold: the replica restarted, so every summary comes
		// from the body store again (one GET each, 16 at a time).
		c.Storage[0].Signal(syscall.SIGTERM)
		c.Storage[0].Start()
		// Until the access pod's connection to storage is back (it answers
		// NO [UNAVAILABLE] meanwhile, as a client would see).
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
			if _, err := cl.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err == nil {
				break
			} else if time.Now().After(deadline) {
				b.Fatalf("storage not back after its restart: %v", err)
			}
		}
		step("fetch-env-cold", n, func() string {
			bmbFetch(b, cl, all, &imap.FetchOptions{Envelope: true}, n)
			return "storage restarted: summary cache empty"
		})
		step("fetch-bs-cold", bsN, func() string {
			return bmbFetchBodyStructure(b, &cl, c.Access[0].IMAPS, n, 1, bsN)
		})

		// (e) Expunge the first 10 000 (or a tenth of a small mailbox).
		first := 10000
		if n < 2*first {
			first = n / 10
		}
		step("expunge-10k", first, func() string {
			return bmbExpunge(b, cl, imap.SeqSet{imap.SeqRange{Start: 1, Stop: uint32(first)}}, first, n-first)
		})
		// (f) Expunge the rest.
		step("expunge-rest", n-first, func() string {
			return bmbExpunge(b, cl, all, n-first, 0)
		})
		b.StopTimer()
		cl.Logout().Wait()
		cl.Close()

		hwm := bmbStatusKiB(pid, "VmHWM:")
		rss := bmbStatusKiB(pid, "VmRSS:")
		b.ReportMetric(float64(hwm)/1024, "MiB-access-VmHWM")

		var out strings.Builder
		fmt.Fprintf(&out, "\nBigMailbox: %d messages, body store %s, %.1f MiB of bodies (mean %.1f KiB)\n",
			n, store, float64(octets)/(1<<20), float64(octets)/1024/float64(n))
		fmt.Fprintf(&out, "%-15s %9s %10s %12s %14s  %s\n", "step", "messages", "seconds", "msgs/s", "peak RSS MiB", "note")
		for _, s := range steps {
			rate := "-"
			if s.msgs > 0 {
				rate = fmt.Sprintf("%.0f", float64(s.msgs)/s.took.Seconds())
			}
			fmt.Fprintf(&out, "%-15s %9d %10.3f %12s %14.1f  %s\n", s.name, s.msgs, s.took.Seconds(), rate, float64(s.peakRSS)/1024, s.note)
		}
		fmt.Fprintf(&out, "fill rate: %.0f msgs/s, %.2f MiB/s (32 senders over storage gRPC)\n", float64(n)/fillSecs, float64(octets)/(1<<20)/fillSecs)
		fmt.Fprintf(&out, "access process (pid %d): VmRSS after fill %.1f MiB, VmRSS at end %.1f MiB, VmHWM %.1f MiB\n",
			pid, float64(rssAfterFill)/1024, float64(rss)/1024, float64(hwm)/1024)
		fmt.Print(out.String())
		b.Log(out.String())
	}
}

// bmbFill delivers messages 0..n-1 of the mailcorpus through storage gRPC
// with 32 concurrent senders and returns the octets delivered.
func bmbFill(b *testing.B, c *cluster.Cluster, rcpt string, n int) int64 {
	return bmbFillWith(b, c, rcpt, n, nil)
}

// bmbFillWith is bmbFill with each corpus message passed through edit
// first (nil: as generated).
func bmbFillWith(b *testing.B, c *cluster.Cluster, rcpt string, n int, edit func(i int, msg []byte) []byte) int64 {
	b.Helper()
	gen := mailcorpus.NewWithOptions(mailcorpus.Options{Seed: 1, MaxSize: 64 << 10})
	var next, done, octets atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || failed.Load() {
					return
				}
				msg := gen.Message(i)
				if edit != nil {
					msg = edit(i, msg)
				}
				if err := deliverOne(c, rcpt, msg); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("message %d: %w", i, err) })
					failed.Store(true)
					return
				}
				octets.Add(int64(len(msg)))
				if d := done.Add(1); d%20000 == 0 {
					fmt.Printf("  filled %d/%d\n", d, n)
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return octets.Load()
}

func bmbDial(b *testing.B, addr string) *imapclient.Client {
	b.Helper()
	cl, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: insecureTLS()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.Close() })
	return cl
}

func bmbLogin(b *testing.B, cl *imapclient.Client, user, pass string) {
	b.Helper()
	if err := cl.Login(user, pass).Wait(); err != nil {
		b.Fatalf("login %s: %v", user, err)
	}
}

func bmbSelect(b *testing.B, cl *imapclient.Client, want int) {
	b.Helper()
	d, err := cl.Select("INBOX", nil).Wait()
	if err != nil {
		b.Fatalf("SELECT INBOX: %v", err)
	}
	if int(d.NumMessages) != want {
		b.Fatalf("SELECT INBOX: %d EXISTS, want %d", d.NumMessages, want)
	}
}

// bmbFetch streams a FETCH and checks that every one of want messages came
// with the item asked for.
func bmbFetch(b *testing.B, cl *imapclient.Client, set imap.SeqSet, opts *imap.FetchOptions, want int) {
	b.Helper()
	cmd := cl.Fetch(set, opts)
	got, withItem := 0, 0
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		got++
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataFlags:
				if opts.Flags {
					withItem++
				}
			case imapclient.FetchItemDataEnvelope:
				if opts.Envelope && it.Envelope != nil {
					withItem++
				}
			case imapclient.FetchItemDataBodyStructure:
				if opts.BodyStructure != nil && it.BodyStructure != nil {
					withItem++
				}
			}
		}
	}
	if err := cmd.Close(); err != nil {
		b.Fatalf("FETCH %v: %v", set, err)
	}
	if got != want || withItem != want {
		b.Fatalf("FETCH %v: %d messages, %d with the item, want %d", set, got, withItem, want)
	}
}

// bmbFetchBodyStructure times FETCH from:to (BODYSTRUCTURE). A message
// whose BODYSTRUCTURE makes the server drop the connection is noted and
// skipped: the client reconnects (SELECT included, that time is reported
// apart) and goes on with the next message, so that one such message does
// not hide the rate of the others.
func bmbFetchBodyStructure(b *testing.B, clp **imapclient.Client, addr string, n, from, to int) string {
	b.Helper()
	first := from
	var dropped []int
	var reconnect time.Duration
	got := 0
	for from <= to {
		cmd := (*clp).Fetch(imap.SeqSet{imap.SeqRange{Start: uint32(from), Stop: uint32(to)}},
			&imap.FetchOptions{BodyStructure: &imap.FetchItemBodyStructure{Extended: true}})
		last := from - 1
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			ok := false
			for item := msg.Next(); item != nil; item = msg.Next() {
				if bs, isBS := item.(imapclient.FetchItemDataBodyStructure); isBS && bs.BodyStructure != nil {
					ok = true
				}
			}
			if !ok {
				b.Fatalf("FETCH %d (BODYSTRUCTURE): no body structure", msg.SeqNum)
			}
			got++
			last = int(msg.SeqNum)
		}
		err := cmd.Close()
		if err == nil {
			if last != to {
				b.Fatalf("FETCH %d:%d (BODYSTRUCTURE): last message %d", from, to, last)
			}
			break
		}
		// The connection is gone: message last+1 is the culprit.
		if len(dropped) >= 2000 {
			b.Fatalf("FETCH (BODYSTRUCTURE): more than 2000 dropped connections; last: %v", err)
		}
		dropped = append(dropped, last+1)
		start := time.Now()
		(*clp).Close()
		*clp = bmbDial(b, addr)
		bmbLogin(b, *clp, bmbUser, bmbPass)
		bmbSelect(b, *clp, n)
		reconnect += time.Since(start)
		from = last + 2
	}
	if got+len(dropped) != to-first+1 {
		b.Fatalf("FETCH %d:%d (BODYSTRUCTURE): %d messages + %d dropped", first, to, got, len(dropped))
	}
	if len(dropped) == 0 {
		return fmt.Sprintf("%d body structures", got)
	}
	shown := dropped
	if len(shown) > 10 {
		shown = shown[:10]
	}
	return fmt.Sprintf("%d body structures; SERVER DROPPED THE CONNECTION on %d messages (seq %v…), %.3fs of reconnects+SELECT included",
		got, len(dropped), shown, reconnect.Seconds())
}

// bmbExpunge marks set \Deleted, expunges, checks that want messages went
// and left remain, and returns the split between STORE and EXPUNGE.
func bmbExpunge(b *testing.B, cl *imapclient.Client, set imap.SeqSet, want, left int) string {
	b.Helper()
	start := time.Now()
	store := cl.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil)
	if err := store.Close(); err != nil {
		b.Fatalf("STORE %v +FLAGS.SILENT (\\Deleted): %v", set, err)
	}
	stored := time.Since(start)
	seqs, err := cl.Expunge().Collect()
	if err != nil {
		b.Fatalf("EXPUNGE: %v", err)
	}
	expunged := time.Since(start) - stored
	if len(seqs) != want {
		b.Fatalf("EXPUNGE removed %d, want %d", len(seqs), want)
	}
	if got := cl.Mailbox().NumMessages; int(got) != left {
		b.Fatalf("after EXPUNGE: %d messages, want %d", got, left)
	}
	// A NOOP round trip, and the server's own count.
	if err := cl.Noop().Wait(); err != nil {
		b.Fatal(err)
	}
	st, err := cl.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		b.Fatal(err)
	}
	if st.NumMessages == nil || int(*st.NumMessages) != left {
		b.Fatalf("STATUS INBOX after EXPUNGE: %v messages, want %d", st.NumMessages, left)
	}
	return fmt.Sprintf("STORE %.3fs + EXPUNGE %.3fs", stored.Seconds(), expunged.Seconds())
}

// bmbAccessPID finds the access process of c: test/cluster keeps its
// exec.Cmd unexported, so look for the process whose command line is the
// cluster's access binary with this pod's IMAPS address.
func bmbAccessPID(b *testing.B, c *cluster.Cluster) int {
	b.Helper()
	bin := filepath.Join(c.BinDir, "access")
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		raw, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := bytes.Split(bytes.TrimRight(raw, "\x00"), []byte{0})
		if len(args) == 0 || string(args[0]) != bin {
			continue
		}
		for j := 0; j+1 < len(args); j++ {
			if string(args[j]) == "--imaps-listen" && string(args[j+1]) == c.Access[0].IMAPS {
				pid, _ := strconv.Atoi(filepath.Base(d))
				return pid
			}
		}
	}
	b.Fatalf("access process (%s --imaps-listen %s) not found in /proc", bin, c.Access[0].IMAPS)
	return 0
}

// bmbStatusKiB reads one "Key: N kB" line of /proc/pid/status, or 0.
func bmbStatusKiB(pid int, key string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			var kib int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kib)
			return kib
		}
	}
	return 0
}

// bmbSampleRSS samples pid's VmRSS every 100 ms until the returned function
// is called; that function returns the peak (KiB).
func bmbSampleRSS(pid int) func() int64 {
	var peak atomic.Int64
	peak.Store(bmbStatusKiB(pid, "VmRSS:"))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if v := bmbStatusKiB(pid, "VmRSS:"); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		if v := bmbStatusKiB(pid, "VmRSS:"); v > peak.Load() {
			peak.Store(v)
		}
		return peak.Load()
	}
}
