package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/dnstest"
	"github.com/mailfleet/mailfleet/test/rspamdtest"
)

// startRspamd starts a real rspamd (its proxy worker in milter mode, on
// loopback, asking only the test's DNS server, which it returns too).
func startRspamd(t *testing.T, o rspamdtest.Options) (*rspamdtest.Server, *dnstest.Server) {
	t.Helper()
	dns, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dns.Close)
	dns.TXT("example.org", "v=spf1 ip4:127.0.0.1 -all")
	o.DNS = dns.Addr
	rs, err := rspamdtest.Start(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			log := rs.Log()
			t.Logf("--- rspamd log (end) ---\n%s", log[max(0, len(log)-6000):])
		}
		rs.Stop()
	})
	return rs, dns
}

// startRspamdMX starts rspamd and a cluster whose MX filters through it.
func startRspamdMX(t *testing.T, o rspamdtest.Options, inboundArgs ...string) (*cluster.Cluster, *rspamdtest.Server) {
	t.Helper()
	rs, dns := startRspamd(t, o)
	args := append([]string{"--milter", rs.Addr, "--milter-timeout", "10s"}, inboundArgs...)
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Inbound: 1, DNS: dns.Addr, InboundArgs: args})
	return c, rs
}

func milterMessage(subject, body string) []byte {
	return []byte("From: Sender <s@example.org>\r\nTo: ann@example.test\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.org>\r\nDate: Mon, 30 Nov 2026 08:00:00 +0000\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + body)
}

// metricsOf returns the MX's /metrics page.
func metricsOf(t *testing.T, in *cluster.Inbound) string {
	t.Helper()
	resp, err := http.Get("http://" + in.Ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// smtpCode returns the reply code and text of a refused SMTP step.
func smtpCode(t *testing.T, err error) (int, string) {
	t.Helper()
	var tpErr *textproto.Error
	if !errors.As(err, &tpErr) {
		t.Fatalf("want an SMTP refusal, got %v", err)
	}
	return tpErr.Code, tpErr.Msg
}

// A clean message reaches INBOX with the fields rspamd asked for
// (SMFIR_ADDHEADER: X-Spamd-Result, X-Rspamd-Queue-Id carrying the MX's
// queue id, the "i" macro, and so on) at the end of its header. GTUBE gets
// rspamd's reject action, which its milter sends as SMFIR_REPLYCODE
// "554 5.7.1 <reason>": the MX answers DATA with that code and text, and
// stores nothing.
func TestRspamdCleanAndGTUBE(t *testing.T) {
	c, _ := startRspamdMX(t, rspamdtest.Options{})
	ann := c.CreateAccount("ann@example.test", "pw-ann-secret")
	clean := milterMessage("clean", "Hello Ann,\r\nthe minutes of Monday's meeting are attached.\r\n")
	if err := sendSMTP(c.Inbound[0].SMTP, "s@example.org", []string{"ann@example.test"}, clean); err != nil {
		t.Fatalf("clean message refused: %v", err)
	}
	bodies, _ := inboxBodies(t, c, ann.Id)
	if len(bodies) != 1 {
		t.Fatalf("INBOX holds %d messages, want the clean one", len(bodies))
	}
	stored := string(bodies[0])
	header, body, _ := strings.Cut(stored, "\r\n\r\n")
	if origHeader, origBody, _ := strings.Cut(string(clean), "\r\n\r\n"); body != origBody || !strings.Contains(header+"\r\n", origHeader+"\r\n") {
		t.Fatalf("the stored message lost the original:\n%s", stored)
	}
	id := regexp.MustCompile(`with ESMTP id ([0-9a-f]+)`).FindStringSubmatch(header)
	if id == nil {
		t.Fatalf("no Received id in\n%s", header)
	}
	for _, want := range []string{"\r\nX-Spamd-Result: default: False", "\r\nX-Rspamd-Queue-Id: " + id[1] + "\r\n", "\r\nX-Spam-Status: No"} {
		if !strings.Contains(header+"\r\n", want) {
			t.Errorf("stored header lacks %q:\n%s", want, header)
		}
	}
	if !strings.HasPrefix(header, "Received: ") {
		t.Errorf("the MX's Received field is no longer first:\n%s", header)
	}

	spam := milterMessage("gtube", "Buy now!\r\n"+rspamdtest.GTUBE+"\r\n")
	err := sendSMTP(c.Inbound[0].SMTP, "s@example.org", []string{"ann@example.test"}, spam)
	code, msg := smtpCode(t, err)
	if code != 554 || !strings.HasPrefix(msg, "5.7.1 ") || !strings.Contains(msg, "Gtube") {
		t.Fatalf("GTUBE answered %d %q, want rspamd's 554 5.7.1 with its reason", code, msg)
	}
	if bodies, _ := inboxBodies(t, c, ann.Id); len(bodies) != 1 {
		t.Fatalf("INBOX holds %d messages after the rejection, want 1", len(bodies))
	}
	metrics := metricsOf(t, c.Inbound[0])
	for _, want := range []string{`mailfleet_inbound_milter_actions_total{action="accept"} 1`, `mailfleet_inbound_milter_actions_total{action="reject"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// With quarantine_on_reject, rspamd's milter answers GTUBE with
// SMFIR_QUARANTINE (smfi_quarantine: "quarantine the message using the given
// reason") and accepts: the MX says 250 and the message lands in the
// recipient's Junk mailbox, not INBOX.
func TestRspamdQuarantineToJunk(t *testing.T) {
	c, _ := startRspamdMX(t, rspamdtest.Options{QuarantineOnReject: true})
	ann := c.CreateAccount("ann@example.test", "pw-ann-secret")
	spam := milterMessage("gtube", "Buy now!\r\n"+rspamdtest.GTUBE+"\r\n")
	if err := sendSMTP(c.Inbound[0].SMTP, "s@example.org", []string{"ann@example.test"}, spam); err != nil {
		t.Fatalf("quarantined message refused: %v", err)
	}
	junk, _ := mailboxBodies(t, c, ann.Id, "Junk")
	if len(junk) != 1 || !bytes.Contains(junk[0], []byte(rspamdtest.GTUBE)) {
		t.Fatalf("Junk holds %d messages, want the GTUBE one", len(junk))
	}
	if inbox, _ := inboxBodies(t, c, ann.Id); len(inbox) != 0 {
		t.Fatalf("INBOX holds %d messages, want none", len(inbox))
	}
	if metrics := metricsOf(t, c.Inbound[0]); !strings.Contains(metrics, `mailfleet_inbound_milter_actions_total{action="quarantine"} 1`) {
		t.Errorf("metrics lack the quarantine")
	}
}

// rspamd stopped, fail-open (--milter-default-action accept, Postfix's
// milter_default_action = accept): mail is delivered unfiltered, and the
// MX counts it.
func TestRspamdDownFailOpen(t *testing.T) {
	c, rs := startRspamdMX(t, rspamdtest.Options{}, "--milter-default-action", "accept")
	ann := c.CreateAccount("ann@example.test", "pw-ann-secret")
	rs.Stop()
	msg := milterMessage("while down", "Hello while the filter is down.\r\n")
	if err := sendSMTP(c.Inbound[0].SMTP, "s@example.org", []string{"ann@example.test"}, msg); err != nil {
		t.Fatalf("fail-open refused the message: %v", err)
	}
	bodies, _ := inboxBodies(t, c, ann.Id)
	if len(bodies) != 1 || !bytes.HasSuffix(bodies[0], msg) || bytes.Contains(bodies[0], []byte("X-Spamd-Result")) {
		t.Fatalf("INBOX holds %d messages, want the message unfiltered", len(bodies))
	}
	if metrics := metricsOf(t, c.Inbound[0]); !strings.Contains(metrics, `mailfleet_inbound_milter_actions_total{action="fail-open"} 1`) {
		t.Errorf("metrics lack the fail-open")
	}
}

// rspamd stopped, fail-closed (the default, Postfix's milter_default_action
// = tempfail): MAIL gets 451 4.7.1 and the sender keeps the message for a
// later try (RFC 5321 4.2.5: 4yz, the action may succeed if repeated).
func TestRspamdDownFailClosed(t *testing.T) {
	c, rs := startRspamdMX(t, rspamdtest.Options{})
	ann := c.CreateAccount("ann@example.test", "pw-ann-secret")
	rs.Stop()
	err := sendSMTP(c.Inbound[0].SMTP, "s@example.org", []string{"ann@example.test"}, milterMessage("while down", "Hello.\r\n"))
	if code, msg := smtpCode(t, err); code != 451 || !strings.HasPrefix(msg, "4.7.1 ") {
		t.Fatalf("fail-closed answered %d %q, want 451 4.7.1", code, msg)
	}
	if bodies, _ := inboxBodies(t, c, ann.Id); len(bodies) != 0 {
		t.Fatalf("INBOX holds %d messages, want none", len(bodies))
	}
	if metrics := metricsOf(t, c.Inbound[0]); !strings.Contains(metrics, `mailfleet_inbound_milter_actions_total{action="fail-closed"} 1`) {
		t.Errorf("metrics lack the fail-closed")
	}
}

// The content filter on submission (--milter on the submission tier, as
// Postfix's smtpd_milters on its submission service): rspamd is told the
// user's login ({auth_authen}) and a clean message is delivered with
// rspamd's fields added; GTUBE from the user's own
// client is refused with rspamd's reply and nothing is stored or queued.
func TestRspamdOnSubmission(t *testing.T) {
	rs, dns := startRspamd(t, rspamdtest.Options{})
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Submission: 1, DNS: dns.Addr,
		SubmissionArgs: []string{"--milter", rs.Addr, "--milter-timeout", "10s"}})
	c.CreateAccount("amy@example.test", "amy-secret-pw")
	bob := c.CreateAccount("bob@example.test", "bob-secret-pw")
	msg := func(subject, body string) []byte {
		return []byte("From: Amy <amy@example.test>\r\nTo: bob@example.test\r\nSubject: " + subject +
			"\r\nMessage-ID: <" + subject + "@example.test>\r\nDate: Mon, 30 Nov 2026 08:00:00 +0000\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + body)
	}
	addr := c.Submission[0].Submission
	if err := submit(addr, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"bob@example.test"},
		msg("minutes", "Hi Bob,\r\nthe minutes are below.\r\n")); err != nil {
		t.Fatalf("clean message refused: %v", err)
	}
	bodies, _ := inboxBodies(t, c, bob.Id)
	if len(bodies) != 1 {
		t.Fatalf("Bob's INBOX holds %d messages, want the clean one", len(bodies))
	}
	header, body, _ := strings.Cut(string(bodies[0]), "\r\n\r\n")
	if body != "Hi Bob,\r\nthe minutes are below.\r\n" || !strings.Contains(header, "\r\nX-Spamd-Result: default: False") {
		t.Fatalf("stored message lacks rspamd's fields or lost its body:\n%s", bodies[0])
	}
	if !strings.Contains(header, "Received: from ") || !strings.Contains(header, "with ESMTPSA id ") {
		t.Fatalf("no submission Received field:\n%s", header)
	}
	// rspamd saw an authenticated sender: its task log names the user.
	if !strings.Contains(rs.Log(), "user: amy@example.test,") {
		t.Errorf("rspamd did not see the authenticated user (its task log has no \"user: amy@example.test\")")
	}

	err := submit(addr, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"bob@example.test", "carl@remote.example"},
		msg("gtube", "Buy now!\r\n"+rspamdtest.GTUBE+"\r\n"))
	code, text := smtpCode(t, err)
	if code != 554 || !strings.HasPrefix(text, "5.7.1 ") || !strings.Contains(text, "Gtube") {
		t.Fatalf("GTUBE answered %d %q, want rspamd's 554 5.7.1 with its reason", code, text)
	}
	if bodies, _ := inboxBodies(t, c, bob.Id); len(bodies) != 1 {
		t.Fatalf("Bob's INBOX holds %d messages after the refusal, want 1", len(bodies))
	}
	list, err := c.Queue().ListQueue(context.Background(), &storagev1.ListQueueRequest{})
	if err != nil || len(list.Items) != 0 {
		t.Fatalf("queue after the refusal: %v %v; want empty", list.GetItems(), err)
	}
	if m := metricsOf(t, &cluster.Inbound{Ops: c.Submission[0].Ops}); !strings.Contains(m, `mailfleet_submission_milter_actions_total{action="reject"} 1`) {
		t.Errorf("submission metrics lack the reject count")
	}
}

// Two MX pods filter through one rspamd while 16 senders keep sending, and
// rspamd is restarted in the middle (fail-closed, the default). A sender
// retries a 4xx reply, as an MTA does (RFC 5321 4.2.5). Every clean message
// ends up in INBOX exactly once, with rspamd's fields; every GTUBE one ends
// with 554 5.7.1 and is never stored; the restart did turn some messages
// away with 451 4.7.1, and none of those was kept.
func TestRspamdUnderLoadWithARestart(t *testing.T) {
	rs, dns := startRspamd(t, rspamdtest.Options{})
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Inbound: 2, DNS: dns.Addr,
		InboundArgs: []string{"--milter", rs.Addr, "--milter-timeout", "10s"}})
	ann := c.CreateAccount("ann@example.test", "pw-ann-secret")
	const senders, perSender = 16, 12
	type outcome struct {
		spam      bool
		code      int // the final reply: 250 or the refusal's code
		tempfails int // 4xx replies before it
	}
	outcomes := make([][]outcome, senders)
	var sent atomic.Int64
	var wg sync.WaitGroup
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := c.Inbound[w%2].SMTP
			for i := range perSender {
				o := outcome{spam: i%4 == 3}
				body := fmt.Sprintf("Message %d of sender %d.\r\n", i, w)
				if o.spam {
					body += rspamdtest.GTUBE + "\r\n"
				}
				msg := milterMessage(fmt.Sprintf("load %d %d", w, i), body)
				for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
					err := sendSMTP(addr, "s@example.org", []string{"ann@example.test"}, msg)
					var tpErr *textproto.Error
					switch {
					case err == nil:
						o.code = 250
					case errors.As(err, &tpErr) && tpErr.Code/100 == 4 && time.Now().Before(deadline):
						o.tempfails++
						continue
					case errors.As(err, &tpErr):
						o.code = tpErr.Code
						if !strings.HasPrefix(tpErr.Msg, "5.7.1 ") && !strings.HasPrefix(tpErr.Msg, "4.7.1 ") {
							t.Errorf("sender %d message %d: %d %q", w, i, tpErr.Code, tpErr.Msg)
						}
					default:
						t.Errorf("sender %d message %d: %v", w, i, err)
					}
					break
				}
				outcomes[w] = append(outcomes[w], o)
				sent.Add(1)
			}
		}()
	}
	// Restart rspamd once a third of the messages are through.
	for sent.Load() < senders*perSender/3 {
		time.Sleep(20 * time.Millisecond)
	}
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	clean, tempfails := 0, 0
	for w, list := range outcomes {
		for i, o := range list {
			tempfails += o.tempfails
			switch {
			case o.spam && o.code != 554:
				t.Errorf("GTUBE message %d of sender %d ended with %d, want 554", i, w, o.code)
			case !o.spam && o.code != 250:
				t.Errorf("clean message %d of sender %d ended with %d, want 250", i, w, o.code)
			case !o.spam:
				clean++
			}
		}
	}
	if tempfails == 0 {
		t.Errorf("no sender got a 4xx while rspamd restarted: the fault was not exercised")
	}
	bodies, _ := inboxBodies(t, c, ann.Id)
	seen := map[string]bool{}
	for _, b := range bodies {
		header, body, _ := strings.Cut(string(b), "\r\n\r\n")
		id := regexp.MustCompile(`(?m)^Subject: (load \d+ \d+)\r$`).FindStringSubmatch(header)
		switch {
		case id == nil:
			t.Errorf("stored message without a load subject:\n%s", header)
		case seen[id[1]]:
			t.Errorf("%q stored twice", id[1])
		case strings.Contains(body, "GTUBE"):
			t.Errorf("%q (GTUBE) was stored", id[1])
		case !strings.Contains(header, "\r\nX-Spamd-Result: "):
			t.Errorf("%q stored without rspamd's fields", id[1])
		}
		if id != nil {
			seen[id[1]] = true
		}
	}
	if len(bodies) != clean {
		t.Errorf("INBOX holds %d messages, want the %d clean ones", len(bodies), clean)
	}
	t.Logf("%d messages, %d clean delivered, %d temporary refusals during the restart", senders*perSender, clean, tempfails)
}
