package e2e

import (
	"bytes"
	"fmt"
	"net/smtp"
	"sync"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/dnstest"
)

// BenchmarkInbound: 10 KiB messages accepted and durable, with 1, 10 and 50
// concurrent sessions (each sending several messages on one connection).
func BenchmarkInbound(b *testing.B) {
	dns, err := dnstest.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer dns.Close()
	dns.TXT("example.org", "v=spf1 ip4:127.0.0.1 -all")
	c := cluster.Start(b, binDir, minioServer, cluster.Options{Inbound: 1, DNS: dns.Addr, InboundArgs: []string{"--max-conns-per-ip", "1000"}})
	c.CreateAccount("sink@example.test", "sink-secret-pw")
	msg := append([]byte("From: s@example.org\r\nTo: sink@example.test\r\nSubject: bench\r\n\r\n"), bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"), 140)...)
	for _, sessions := range []int{1, 10, 50} {
		total := 600
		perSession := total / sessions
		start := time.Now()
		var wg sync.WaitGroup
		for s := 0; s < sessions; s++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl, err := smtp.Dial(c.Inbound[0].SMTP)
				if err != nil {
					b.Error(err)
					return
				}
				defer cl.Close()
				cl.Hello("bench.example.org")
				for i := 0; i < perSession; i++ {
					if err := cl.Mail("s@example.org"); err != nil {
						b.Error(err)
						return
					}
					cl.Rcpt("sink@example.test")
					w, _ := cl.Data()
					w.Write(msg)
					if err := w.Close(); err != nil {
						b.Error(err)
						return
					}
				}
				cl.Quit()
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(perSession*sessions)/time.Since(start).Seconds(), fmt.Sprintf("msgs/s(10KiB,%d-sessions)", sessions))
	}
}

// BenchmarkSubmissionToRemote: messages submitted and delivered through the
// queue to a loopback MX, end to end.
func BenchmarkSubmissionToRemote(b *testing.B) {
	c, _, mx := startSubmissionB(b)
	c.CreateAccount("amy@example.test", "amy-secret-pw")
	const n, senders = 300, 10
	msg := append([]byte("From: amy@example.test\r\nSubject: bench\r\n\r\n"), bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"), 140)...)
	start := time.Now()
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/senders; i++ {
				if err := submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"zed@remote.example"}, msg); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	accepted := time.Since(start)
	deadline := time.Now().Add(2 * time.Minute)
	for len(mx.Received()) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	b.ReportMetric(float64(n)/accepted.Seconds(), "submitted/s(10KiB,10-clients)")
	b.ReportMetric(float64(len(mx.Received()))/time.Since(start).Seconds(), "delivered-to-remote/s(end-to-end)")
}
