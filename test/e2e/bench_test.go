package e2e

// Benchmarks of the access tier on a real cluster (everything on this
// machine's cores). They print figures; nothing here asserts a speed.
//
//	go test -run '^$' -bench . -benchtime 1x ./test/e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailfleet/mailfleet/test/cluster"
)

var benchArgs = []string{"--max-conns-per-ip", "5000", "--max-sessions-per-account", "5000"}

// fill delivers n 2 KiB messages with 16 concurrent senders.
func fill(b *testing.B, c *cluster.Cluster, rcpt string, n int) {
	b.Helper()
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c.Deliver([]string{rcpt}, message(i))
			}
		}()
	}
	wg.Wait()
}

func BenchmarkIMAPLogin(b *testing.B) {
	c := cluster.Start(b, binDir, minioServer, cluster.Options{Access: 1, AccessArgs: benchArgs})
	c.CreateAccount("bench@example.test", "bench-secret")
	b.ResetTimer()
	start := time.Now()
	n := 200
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/4; i++ {
				cl, err := imapclient.DialTLS(c.Access[0].IMAPS, &imapclient.Options{TLSConfig: insecureTLS()})
				if err != nil {
					b.Error(err)
					return
				}
				if err := cl.Login("bench@example.test", "bench-secret").Wait(); err != nil {
					b.Error(err)
				}
				if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
					b.Error(err)
				}
				cl.Logout().Wait()
				cl.Close()
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "login-select-logout/s")
}

func BenchmarkIMAPSelectFetch10k(b *testing.B) {
	c := cluster.Start(b, binDir, minioServer, cluster.Options{Access: 1, AccessArgs: benchArgs})
	c.CreateAccount("big@example.test", "big-secret")
	fill(b, c, "big@example.test", 10000)
	cl, err := imapclient.DialTLS(c.Access[0].IMAPS, &imapclient.Options{TLSConfig: insecureTLS()})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Login("big@example.test", "big-secret").Wait(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var took []time.Duration
	for i := 0; i < 3; i++ {
		start := time.Now()
		if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
			b.Fatal(err)
		}
		msgs, err := cl.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, Envelope: true}).Collect()
		if err != nil || len(msgs) != 10000 {
			b.Fatalf("fetch: %d %v", len(msgs), err)
		}
		took = append(took, time.Since(start))
		cl.Unselect().Wait()
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	b.ReportMetric(float64(took[1].Milliseconds()), "ms-select+fetch-10k(median-of-3)")
}

func BenchmarkIMAPAppend(b *testing.B) {
	c := cluster.Start(b, binDir, minioServer, cluster.Options{Access: 1, AccessArgs: benchArgs})
	body := append([]byte("Subject: bench\r\n\r\n"), bytes.Repeat([]byte("0123456789abcdef\r\n"), 560)...) // ~10 KiB
	const clients, perClient = 8, 150
	var cls []*imapclient.Client
	for i := 0; i < clients; i++ {
		user := fmt.Sprintf("ap%d@example.test", i)
		c.CreateAccount(user, "pw-secret")
		cl, err := imapclient.DialTLS(c.Access[0].IMAPS, &imapclient.Options{TLSConfig: insecureTLS()})
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		if err := cl.Login(user, "pw-secret").Wait(); err != nil {
			b.Fatal(err)
		}
		cls = append(cls, cl)
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, cl := range cls {
		wg.Add(1)
		go func(cl *imapclient.Client) {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				cmd := cl.Append("INBOX", int64(len(body)), nil)
				cmd.Write(body)
				cmd.Close()
				if _, err := cmd.Wait(); err != nil {
					b.Error(err)
					return
				}
			}
		}(cl)
	}
	wg.Wait()
	b.ReportMetric(float64(clients*perClient)/time.Since(start).Seconds(), "appends/s(10KiB,8-clients)")
}

func BenchmarkIMAPIdleLatencyAcrossPods(b *testing.B) {
	c := cluster.Start(b, binDir, minioServer, cluster.Options{Storage: 2, Access: 2, AccessArgs: benchArgs})
	c.CreateAccount("lat@example.test", "lat-secret")
	got := make(chan struct{}, 100)
	watcher, err := imapclient.DialTLS(c.Access[1].IMAPS, &imapclient.Options{TLSConfig: insecureTLS(),
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				got <- struct{}{}
			}
		}}})
	if err != nil {
		b.Fatal(err)
	}
	defer watcher.Close()
	watcher.Login("lat@example.test", "lat-secret").Wait()
	watcher.Select("INBOX", nil).Wait()
	idle, err := watcher.Idle()
	if err != nil {
		b.Fatal(err)
	}
	defer idle.Close()
	writer, err := imapclient.DialTLS(c.Access[0].IMAPS, &imapclient.Options{TLSConfig: insecureTLS()})
	if err != nil {
		b.Fatal(err)
	}
	defer writer.Close()
	writer.Login("lat@example.test", "lat-secret").Wait()
	b.ResetTimer()
	var lat []time.Duration
	for i := 0; i < 200; i++ {
		cmd := writer.Append("INBOX", int64(len(message(i))), nil)
		cmd.Write(message(i))
		cmd.Close()
		// Latency from the moment the APPEND is acknowledged.
		if _, err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		acked := time.Now()
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			b.Fatal("no EXISTS")
		}
		lat = append(lat, time.Since(acked))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50-ack-to-EXISTS")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "ms-p99-ack-to-EXISTS")
}

func BenchmarkIMAPIdleConnectionMemory(b *testing.B) {
	c := cluster.Start(b, binDir, minioServer, cluster.Options{Access: 1, AccessArgs: benchArgs})
	c.CreateAccount("many@example.test", "many-secret")
	c.Deliver([]string{"many@example.test"}, message(1))
	before := c.Access[0].RSSKiB()
	const conns = 1000
	var clients []*imapclient.Client
	for i := 0; i < conns; i++ {
		cl, err := imapclient.DialTLS(c.Access[0].IMAPS, &imapclient.Options{TLSConfig: insecureTLS()})
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		if err := cl.Login("many@example.test", "many-secret").Wait(); err != nil {
			b.Fatal(err)
		}
		if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
			b.Fatal(err)
		}
		idle, err := cl.Idle()
		if err != nil {
			b.Fatal(err)
		}
		defer idle.Close()
		clients = append(clients, cl)
	}
	time.Sleep(2 * time.Second)
	after := c.Access[0].RSSKiB()
	b.ReportMetric(float64(after-before)/conns, "KiB-RSS-per-idle-conn")
	b.ReportMetric(float64(after)/1024, "MiB-RSS-total")
}

// BenchmarkIMAPNotifyConnectionMemory is BenchmarkIMAPIdleConnectionMemory
// for sessions that wait between commands under NOTIFY (RFC 5465) instead
// of in IDLE, with the selected mailbox and every other one watched.
func BenchmarkIMAPNotifyConnectionMemory(b *testing.B) {
	c := cluster.Start(b, binDir, minioServer, cluster.Options{Access: 1, AccessArgs: benchArgs})
	c.CreateAccount("many@example.test", "many-secret")
	c.Deliver([]string{"many@example.test"}, message(1))
	before := c.Access[0].RSSKiB()
	const conns = 1000
	for i := 0; i < conns; i++ {
		conn, err := tls.Dial("tcp", c.Access[0].IMAPS, insecureTLS())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		for j, cmd := range []string{"", "a LOGIN many@example.test many-secret", "b SELECT INBOX",
			"c NOTIFY SET (SELECTED (MessageNew MessageExpunge FlagChange)) (PERSONAL (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))"} {
			if cmd != "" {
				fmt.Fprintf(conn, "%s\r\n", cmd)
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				if j == 0 || strings.HasPrefix(l, cmd[:2]) {
					if j > 0 && !strings.HasPrefix(l, cmd[:2]+"OK") {
						b.Fatalf("%s: %s", cmd, l)
					}
					break
				}
			}
		}
	}
	time.Sleep(2 * time.Second)
	after := c.Access[0].RSSKiB()
	b.ReportMetric(float64(after-before)/conns, "KiB-RSS-per-notify-conn")
	b.ReportMetric(float64(after)/1024, "MiB-RSS-total")
}

func BenchmarkPOP3Retr(b *testing.B) {
	c := cluster.Start(b, binDir, minioServer, cluster.Options{Access: 1, AccessArgs: benchArgs})
	c.CreateAccount("pop@example.test", "pop-secret")
	fill(b, c, "pop@example.test", 500)
	conn := pop3DialB(b, c.Access[0].POP3S)
	conn.cmd("USER pop@example.test")
	conn.cmd("PASS pop-secret")
	b.ResetTimer()
	start := time.Now()
	for i := 1; i <= 500; i++ {
		conn.retr(i)
	}
	b.ReportMetric(500/time.Since(start).Seconds(), "RETR/s(2KiB,1-session)")
	conn.cmd("QUIT")
}
