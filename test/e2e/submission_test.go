package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	gosmtp "github.com/emersion/go-smtp"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/dnstest"
	"github.com/mailfleet/mailfleet/test/fakemx"
)

// startSubmission starts a cluster with submission processes, a loopback DNS
// whose MX for remote.example is a fake server on loopback.
func startSubmission(t *testing.T, n int, args ...string) (*cluster.Cluster, *dnstest.Server, *fakemx.Server) {
	return startSubmissionTB(t, n, args...)
}

func startSubmissionB(b *testing.B) (*cluster.Cluster, *dnstest.Server, *fakemx.Server) {
	return startSubmissionTB(b, 1, "--max-conns-per-ip", "1000", "--queue-workers", "16")
}

func startSubmissionTB(t testing.TB, n int, args ...string) (*cluster.Cluster, *dnstest.Server, *fakemx.Server) {
	t.Helper()
	dns, mx, port := startRemoteMX(t)
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Submission: n, DNS: dns.Addr,
		SubmissionArgs: append([]string{"--remote-port", port, "--retry-schedule", "1s"}, args...)})
	return c, dns, mx
}

// startRemoteMX starts a loopback DNS server whose MX for remote.example is
// a fake SMTP server on loopback, listening on the returned port.
func startRemoteMX(t testing.TB) (*dnstest.Server, *fakemx.Server, string) {
	t.Helper()
	dns, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dns.Close)
	mx, err := fakemx.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mx.Close)
	_, port := split(mx.Addr)
	dns.MX("remote.example", "mx.remote.example", 10)
	dns.A("mx.remote.example", "127.0.0.1")
	return dns, mx, port
}

// submit sends a message through submission with STARTTLS and AUTH PLAIN.
func submit(addr, user, pass, from string, to []string, msg []byte) error {
	_, err := submitAcked(addr, user, pass, from, to, msg)
	return err
}

// submitAcked is submit that also reports whether the message was
// acknowledged (250 after the data), whatever happened afterwards.
func submitAcked(addr, user, pass, from string, to []string, msg []byte) (acked bool, err error) {
	cl, err := smtp.Dial(addr)
	if err != nil {
		return false, err
	}
	defer cl.Close()
	if err := cl.Hello("laptop.example"); err != nil {
		return false, err
	}
	if err := cl.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
		return false, err
	}
	// net/smtp's PlainAuth insists on the host name the client dialled.
	host, _, _ := net.SplitHostPort(addr)
	if err := cl.Auth(smtp.PlainAuth("", user, pass, host)); err != nil {
		return false, err
	}
	return transact(cl, from, to, msg)
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// AUTH only over TLS, passwords checked, senders must be the user's own.
func TestSubmissionAuthAndOwnership(t *testing.T) {
	c, _, _ := startSubmission(t, 1)
	c.CreateAccount("amy@example.test", "amy-secret-pw")
	c.CreateAccount("bob@example.test", "bob-secret-pw")
	r := rawSMTP(t, c.Submission[0].Submission)
	ehlo := r.cmd("EHLO laptop.example", "250")
	if !strings.Contains(ehlo, "STARTTLS") || strings.Contains(ehlo, "AUTH") {
		t.Fatalf("plaintext EHLO:\n%s", ehlo)
	}
	r.cmd("AUTH PLAIN AGFteUBleGFtcGxlLnRlc3QAYW15LXNlY3JldC1wdw==", "5")
	r.cmd("MAIL FROM:<amy@example.test>", "530 5.7.0")
	// Wrong password → 535; someone else's address → 553.
	err := submit(c.Submission[0].Submission, "amy@example.test", "wrong", "amy@example.test", []string{"bob@example.test"}, []byte("From: amy@example.test\r\n\r\nx\r\n"))
	if !strings.HasPrefix(smtpReply(err), "535") {
		t.Fatalf("wrong password: %v", err)
	}
	err = submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "bob@example.test", []string{"bob@example.test"}, []byte("From: amy@example.test\r\n\r\nx\r\n"))
	if !strings.HasPrefix(smtpReply(err), "553 5.7.1") {
		t.Fatalf("MAIL FROM someone else: %v", err)
	}
	err = submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"bob@example.test"}, []byte("From: bob@example.test\r\nSubject: spoof\r\n\r\nx\r\n"))
	if !strings.HasPrefix(smtpReply(err), "553 5.7.1") {
		t.Fatalf("From: someone else: %v", err)
	}
	// RFC 5322 3.6: exactly one From: field. With a second one, the checked
	// field and the one a reader (or DKIM, which signs the last) sees differ.
	err = submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"bob@example.test"},
		[]byte("From: amy@example.test\r\nFrom: bob@example.test\r\nSubject: two\r\n\r\nx\r\n"))
	if !strings.HasPrefix(smtpReply(err), "550 5.6.0") {
		t.Fatalf("two From: fields: %v", err)
	}
	// Sender:, Resent-From: and Resent-Sender: claim a sender too (RFC 5322
	// 3.6.2, 3.6.6): each must be the user's own.
	for _, field := range []string{"Sender", "Resent-From", "Resent-Sender", "sender"} {
		err = submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"bob@example.test"},
			[]byte("From: amy@example.test\r\n"+field+": Bob <bob@example.test>\r\nSubject: on behalf\r\n\r\nx\r\n"))
		if !strings.HasPrefix(smtpReply(err), "553 5.7.1") {
			t.Fatalf("%s: someone else: %v", field, err)
		}
	}
	if err := submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"bob@example.test"},
		[]byte("From: amy@example.test\r\nSender: Amy <AMY@example.test>\r\nResent-From: amy@example.test\r\nSubject: own\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("Sender: and Resent-From: of the user's own: %v", err)
	}
	// An alias is the user's own.
	amy := c.CreateAccount("amy2@example.test", "amy2-secret-pw")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Accounts.AddAlias(ctx, &storagev1.AddAliasRequest{Alias: "sales@example.test", AccountId: amy.Id}); err != nil {
		t.Fatal(err)
	}
	if err := submit(c.Submission[0].Submission, "amy2@example.test", "amy2-secret-pw", "sales@example.test", []string{"bob@example.test"},
		[]byte("From: Sales <sales@example.test>\r\nSubject: hi\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("sending as an alias: %v", err)
	}
}

// Local and remote recipients in one message: the local copy lands, the
// remote server gets it DKIM-signed with a signature that verifies against
// the published key.
func TestSubmissionLocalAndRemote(t *testing.T) {
	c, dns, mx := startSubmission(t, 1)
	amy := c.CreateAccount("amy@example.test", "amy-secret-pw")
	bob := c.CreateAccount("bob@example.test", "bob-secret-pw")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := c.Accounts.GenerateDKIMKey(ctx, &storagev1.GenerateDKIMKeyRequest{Domain: "example.test"})
	if err != nil {
		t.Fatal(err)
	}
	dns.TXT(key.Key.DnsName, key.Key.DnsValue)
	msg := []byte("From: Amy <amy@example.test>\r\nTo: bob@example.test, zed@remote.example\r\nSubject: mixed\r\nMessage-ID: <mixed@example.test>\r\n\r\nHello both.\r\n")
	if err := submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"bob@example.test", "zed@remote.example"}, msg); err != nil {
		t.Fatal(err)
	}
	bodies, _ := inboxBodies(t, c, bob.Id)
	if len(bodies) != 1 || !bytes.HasSuffix(bodies[0], msg) {
		t.Fatalf("local copy: %q", bodies)
	}
	waitFor(t, "the remote copy", 10*time.Second, func() bool { return len(mx.Received()) == 1 })
	got := mx.Received()[0]
	if got.From != "amy@example.test" || len(got.To) != 1 || got.To[0] != "zed@remote.example" || !bytes.HasSuffix(got.Data, msg) {
		t.Fatalf("remote got %+v", got)
	}
	verifications, err := dkim.VerifyWithOptions(bytes.NewReader(got.Data), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		return (&netResolver{dns.Addr}).txt(name)
	}})
	if err != nil || len(verifications) != 1 || verifications[0].Err != nil || verifications[0].Domain != "example.test" {
		t.Fatalf("DKIM on the remote copy: %v %+v", err, verifications)
	}
	// Nothing stays in the queue, and the sender got no bounce.
	waitFor(t, "an empty queue", 5*time.Second, func() bool {
		q, err := c.Queue().ListQueue(ctx, &storagev1.ListQueueRequest{})
		return err == nil && len(q.Items) == 0
	})
	if b, _ := inboxBodies(t, c, amy.Id); len(b) != 0 {
		t.Fatalf("sender got %d messages", len(b))
	}
}

// 421 twice, then 250: delivered once, with back-off between the tries.
func TestQueueRetriesWithBackoff(t *testing.T) {
	c, _, mx := startSubmission(t, 1)
	c.CreateAccount("amy@example.test", "amy-secret-pw")
	busy := &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 3, 2}, Message: "busy"}
	mx.Set(func(s *fakemx.Server) { s.DataReplies = []*gosmtp.SMTPError{busy, busy} })
	if err := submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"zed@remote.example"},
		[]byte("From: amy@example.test\r\nSubject: retry\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery after two 421s", 20*time.Second, func() bool { return len(mx.Received()) == 1 })
	tries := mx.DataTries()
	if len(tries) != 3 {
		t.Fatalf("%d DATA attempts, want 3", len(tries))
	}
	for i := 1; i < len(tries); i++ {
		if gap := tries[i].Sub(tries[i-1]); gap < 900*time.Millisecond {
			t.Fatalf("attempt %d came %v after the previous one: no back-off", i+1, gap)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	if n := len(mx.Received()); n != 1 {
		t.Fatalf("delivered %d times", n)
	}
}

// 550 from the remote server: a DSN in the sender's INBOX names the
// recipient and the remote reply.
func TestQueueBounceDSN(t *testing.T) {
	c, _, mx := startSubmission(t, 1)
	amy := c.CreateAccount("amy@example.test", "amy-secret-pw")
	mx.Set(func(s *fakemx.Server) {
		s.RcptReply = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user zed"}
	})
	if err := submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"zed@remote.example"},
		[]byte("From: amy@example.test\r\nSubject: doomed\r\nMessage-ID: <doomed@example.test>\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	var dsn []byte
	waitFor(t, "a DSN", 15*time.Second, func() bool {
		b, _ := inboxBodies(t, c, amy.Id)
		if len(b) == 1 {
			dsn = b[0]
		}
		return len(b) == 1
	})
	for _, want := range []string{"multipart/report; report-type=delivery-status", "Final-Recipient: rfc822; zed@remote.example",
		"Action: failed", "Status: 5.1.1", "550 5.1.1 no such user zed", "Message-ID: <doomed@example.test>"} {
		if !bytes.Contains(dsn, []byte(want)) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitFor(t, "an empty queue", 5*time.Second, func() bool {
		q, err := c.Queue().ListQueue(ctx, &storagev1.ListQueueRequest{})
		return err == nil && len(q.Items) == 0
	})
}

// kill -9 of the runner holding an item after the 250: once its lease
// expires, another runner delivers the message, once.
func TestQueueRunnerKilledMidDelivery(t *testing.T) {
	c, _, mx := startSubmission(t, 1, "--queue-lease-ttl", "3s")
	c.CreateAccount("amy@example.test", "amy-secret-pw")
	// The first connection hangs, so the runner holds the item, stuck.
	mx.Set(func(s *fakemx.Server) { s.StallConnections = 1 })
	if err := submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"zed@remote.example"},
		[]byte("From: amy@example.test\r\nSubject: survive\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waitFor(t, "the runner to take the item", 10*time.Second, func() bool {
		q, err := c.Queue().ListQueue(ctx, &storagev1.ListQueueRequest{})
		return err == nil && len(q.Items) == 1 && q.Items[0].Leased
	})
	// Kill it mid-delivery: once its connection hangs at the remote MX (a
	// kill before it connects would leave the stalled connection to the
	// next runner).
	waitFor(t, "the runner to connect to the remote MX", 10*time.Second, func() bool { return mx.Connections() >= 1 })
	c.Submission[0].Signal(syscall.SIGKILL)
	killed := time.Now()
	c.AddSubmission()
	waitFor(t, "delivery by another runner", 30*time.Second, func() bool { return len(mx.Received()) == 1 })
	t.Logf("delivered %v after kill -9 of the lease holder", time.Since(killed).Round(100*time.Millisecond))
	time.Sleep(time.Second)
	if n := len(mx.Received()); n != 1 {
		t.Fatalf("delivered %d times", n)
	}
}

// Two runners and many items: each item is delivered exactly once.
func TestQueueNoDoubleDelivery(t *testing.T) {
	c, _, mx := startSubmission(t, 2)
	c.CreateAccount("amy@example.test", "amy-secret-pw")
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- submit(c.Submission[i%2].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"zed@remote.example"},
				[]byte(fmt.Sprintf("From: amy@example.test\r\nMessage-ID: <m%d@example.test>\r\n\r\nx\r\n", i)))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all deliveries", 30*time.Second, func() bool { return len(mx.Received()) >= n })
	time.Sleep(2 * time.Second)
	seen := map[string]int{}
	for _, m := range mx.Received() {
		i := bytes.Index(m.Data, []byte("Message-ID: <"))
		seen[string(m.Data[i:i+20])]++
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
