package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/fakemx"
)

// startSlowAndFast starts a cluster with n submission processes whose DNS
// gives fast.example the fake MX of startRemoteMX (127.0.0.1) and
// slow.example a tarpit on 127.0.0.2 (same port): it accepts connections and
// never says a word.
func startSlowAndFast(t *testing.T, n int, args ...string) (c *cluster.Cluster, fast, slow *fakemx.Server) {
	t.Helper()
	dns, fast, port := startRemoteMX(t)
	slow, err := fakemx.StartOn("127.0.0.2:"+port, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(slow.Close)
	slow.Set(func(s *fakemx.Server) { s.StallConnections = 1 << 20 })
	dns.MX("fast.example", "mx.remote.example", 10)
	dns.MX("slow.example", "mx.slow.example", 10)
	dns.A("mx.slow.example", "127.0.0.2")
	c = cluster.Start(t, binDir, minioServer, cluster.Options{Submission: n, DNS: dns.Addr,
		SubmissionArgs: append([]string{"--remote-port", port, "--retry-schedule", "1s"}, args...)})
	return c, fast, slow
}

// enqueueMany queues n messages for rcpt through the storage API (as
// submission would), each with Message-ID <tag-i@example.test>.
func enqueueMany(t *testing.T, c *cluster.Cluster, rcpt string, n int, tag string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range n {
		stream, err := c.Queue().Enqueue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stream.Send(&storagev1.EnqueueRequest{Part: &storagev1.EnqueueRequest_Metadata_{Metadata: &storagev1.EnqueueRequest_Metadata{
			MailFrom: "amy@example.test", Recipients: []string{rcpt}}}})
		stream.Send(&storagev1.EnqueueRequest{Part: &storagev1.EnqueueRequest_Chunk{Chunk: &storagev1.BodyChunk{
			Data: fmt.Appendf(nil, "From: amy@example.test\r\nMessage-ID: <%s-%d@example.test>\r\n\r\nx\r\n", tag, i)}}})
		if _, err := stream.CloseAndRecv(); err != nil {
			t.Fatal(err)
		}
	}
}

// deliveredOnce checks that fake MX received n distinct messages, each once.
func deliveredOnce(t *testing.T, mx *fakemx.Server, n int) {
	t.Helper()
	seen := map[string]int{}
	for _, m := range mx.Received() {
		i := bytes.Index(m.Data, []byte("Message-ID: <"))
		j := bytes.IndexByte(m.Data[i:], '>')
		seen[string(m.Data[i:i+j])]++
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages delivered, want %d", len(seen), n)
	}
	for id, count := range seen {
		if count != 1 {
			t.Fatalf("%s delivered %d times", id, count)
		}
	}
}

// metric returns the value of a sample ("name{labels}") on an ops
// endpoint's /metrics, or -1.
func metric(t *testing.T, ops, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			v, _ := strconv.ParseFloat(rest, 64)
			return v
		}
	}
	return -1
}

// A tarpitting destination delays only its own mail: with its messages
// queued first, the other destination's are all delivered within a bound
// while the tarpit holds no more connections than its concurrency limit
// (Postfix's per-destination concurrency), and the runner's per-destination
// gauges say so.
func TestQueueTarpitDelaysOnlyItsDestination(t *testing.T) {
	c, fast, slow := startSlowAndFast(t, 1, "--queue-workers", "4", "--queue-destination-concurrency", "2")
	enqueueMany(t, c, "s@slow.example", 10, "slow")
	enqueueMany(t, c, "f@fast.example", 30, "fast")
	start := time.Now()
	waitFor(t, "the fast destination's mail", 20*time.Second, func() bool { return len(fast.Received()) >= 30 })
	t.Logf("30 messages to fast.example delivered %v after queueing, beside 10 to a tarpit", time.Since(start).Round(10*time.Millisecond))
	deliveredOnce(t, fast, 30)
	if n := slow.Connections(); n < 1 || n > 2 {
		t.Fatalf("%d connections to the tarpit, want 1 or 2 (the destination limit)", n)
	}
	if len(slow.Received()) != 0 {
		t.Fatal("the tarpit received mail")
	}
	ops := c.Submission[0].Ops
	if v := metric(t, ops, `mailfleet_queue_destination_in_flight{destination="slow.example"}`); v < 1 || v > 2 {
		t.Fatalf("in flight to slow.example: %v", v)
	}
	if v := metric(t, ops, `mailfleet_queue_destination_attempts_total{destination="fast.example",result="delivered"}`); v != 30 {
		t.Fatalf("delivered to fast.example: %v", v)
	}
	if v := metric(t, ops, `mailfleet_queue_destination_queued{destination="slow.example"}`); v != 10 {
		t.Fatalf("queued for slow.example: %v", v)
	}
}

// Two runners share a queue that a tarpit clogs: slow items queued first
// take every lease they can, yet the many items behind them are all
// delivered, each exactly once.
func TestQueueRunnersShareWithoutStarvation(t *testing.T) {
	c, fast, slow := startSlowAndFast(t, 2, "--queue-workers", "4", "--queue-destination-concurrency", "2")
	enqueueMany(t, c, "s@slow.example", 40, "slow")
	enqueueMany(t, c, "f@fast.example", 80, "fast")
	waitFor(t, "the fast destination's mail", 40*time.Second, func() bool { return len(fast.Received()) >= 80 })
	time.Sleep(2 * time.Second) // a double delivery would show by now
	deliveredOnce(t, fast, 80)
	if n := slow.Connections(); n > 4 {
		t.Fatalf("%d connections to the tarpit, want at most 2 per runner", n)
	}
}

// RFC 3464 2.3.3 (Action: delayed): after --delay-warning the sender is told
// once per message that it is still being retried; later success sends
// nothing more, and the final failure still sends the failed DSN.
func TestQueueDelayDSNOnce(t *testing.T) {
	c, _, mx := startSubmission(t, 1, "--delay-warning", "2s", "--queue-lifetime", "10s")
	amy := c.CreateAccount("amy@example.test", "amy-secret-pw")
	later := &gosmtp.SMTPError{Code: 450, EnhancedCode: gosmtp.EnhancedCode{4, 2, 1}, Message: "try later"}
	mx.Set(func(s *fakemx.Server) {
		s.RcptReplies = map[string]*gosmtp.SMTPError{"zed@remote.example": later, "dead@remote.example": later}
	})
	for _, to := range []string{"zed@remote.example", "dead@remote.example"} {
		if err := submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{to},
			[]byte("From: amy@example.test\r\nSubject: for "+to+"\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	dsns := func() (delayed, failed []string) {
		bodies, _ := inboxBodies(t, c, amy.Id)
		for _, b := range bodies {
			switch {
			case bytes.Contains(b, []byte("Action: delayed")):
				delayed = append(delayed, string(b))
			case bytes.Contains(b, []byte("Action: failed")):
				failed = append(failed, string(b))
			}
		}
		return delayed, failed
	}
	waitFor(t, "two delay DSNs", 15*time.Second, func() bool { d, _ := dsns(); return len(d) >= 2 })
	mx.Set(func(s *fakemx.Server) { delete(s.RcptReplies, "zed@remote.example") })
	waitFor(t, "delivery to zed", 10*time.Second, func() bool { return len(mx.Received()) == 1 })
	waitFor(t, "the failed DSN for dead", 20*time.Second, func() bool { _, f := dsns(); return len(f) == 1 })
	time.Sleep(2 * time.Second) // more retries: no more DSNs
	delayed, failed := dsns()
	if len(delayed) != 2 || len(failed) != 1 {
		t.Fatalf("%d delay DSNs and %d failed DSNs, want 2 and 1", len(delayed), len(failed))
	}
	for _, d := range delayed {
		for _, want := range []string{"Subject: Delayed Mail", "Status: 4.2.1", "Will-Retry-Until: ", "450 4.2.1 try later"} {
			if !strings.Contains(d, want) {
				t.Errorf("delay DSN lacks %q:\n%s", want, d)
			}
		}
	}
	if !strings.Contains(delayed[0]+delayed[1], "zed@remote.example") || !strings.Contains(delayed[0]+delayed[1], "dead@remote.example") {
		t.Errorf("the delay DSNs do not name both recipients")
	}
	if !strings.Contains(failed[0], "Final-Recipient: rfc822; dead@remote.example") || !strings.Contains(failed[0], "Status: 5.2.1") {
		t.Errorf("failed DSN:\n%s", failed[0])
	}
	if len(mx.Received()) != 1 {
		t.Fatalf("%d deliveries, want 1", len(mx.Received()))
	}
}
