package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Behind a load balancer: the PROXY header's client address feeds SPF and
// the Received header (203.0.113.7 is only text here; nothing is sent to it).
func TestInboundProxyProtocol(t *testing.T) {
	c, dns := startMX(t, "--proxy-protocol")
	acc := c.CreateAccount("ann@example.test", "pw-ann-secret")
	dns.TXT("lb.example", "v=spf1 ip4:203.0.113.7 -all")
	r := rawSMTPWithPreface(t, c.Inbound[0].SMTP, "PROXY TCP4 203.0.113.7 127.0.0.1 40000 25\r\n")
	r.cmd("EHLO client.lb.example", "250")
	r.cmd("MAIL FROM:<a@lb.example>", "250")
	r.cmd("RCPT TO:<ann@example.test>", "250")
	r.cmd("DATA", "354")
	r.cmd("From: a@lb.example\r\n\r\nbehind a balancer\r\n.", "250")
	bodies, _ := inboxBodies(t, c, acc.Id)
	if len(bodies) != 1 || !strings.Contains(string(bodies[0]), "([203.0.113.7])") || !strings.Contains(string(bodies[0]), "spf=pass") {
		t.Fatalf("stored:\n%s", bodies)
	}
}

// SIGTERM: the transaction in progress finishes; a new one gets 421.
func TestInboundGracefulShutdown(t *testing.T) {
	c, _ := startMX(t)
	acc := c.CreateAccount("ann@example.test", "pw-ann-secret")
	r := rawSMTP(t, c.Inbound[0].SMTP)
	r.cmd("EHLO client.example.org", "250")
	r.cmd("MAIL FROM:<s@example.org>", "250")
	r.cmd("RCPT TO:<ann@example.test>", "250")
	r.cmd("DATA", "354")
	go c.Inbound[0].Signal(syscall.SIGTERM)
	r.cmd("Subject: last\r\n\r\nin flight\r\n.", "250")
	r.cmd("MAIL FROM:<s@example.org>", "421")
	if bodies, _ := inboxBodies(t, c, acc.Id); len(bodies) != 1 {
		t.Fatalf("%d messages stored, want the one in flight", len(bodies))
	}
}

// With --shutdown-delay (the chart sets it), SIGTERM first makes /readyz
// fail while the MX still accepts new connections and mail — the time a
// Service needs to stop routing to the pod — and only then stops.
func TestShutdownDelayKeepsServingWhileNotReady(t *testing.T) {
	c, _ := startMX(t, "--shutdown-delay", "3s")
	acc := c.CreateAccount("ann@example.test", "pw-ann-secret")
	in := c.Inbound[0]
	stopped := make(chan struct{})
	go func() { in.Signal(syscall.SIGTERM); close(stopped) }()
	waitFor(t, "/readyz to fail after SIGTERM", 2*time.Second, func() bool {
		resp, err := http.Get(in.ReadyURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	select {
	case <-stopped:
		t.Fatal("the MX stopped before its shutdown delay")
	default:
	}
	if err := sendSMTP(in.SMTP, "s@example.org", []string{"ann@example.test"}, []byte("Subject: late\r\n\r\nsent while draining\r\n")); err != nil {
		t.Fatalf("a new connection during the shutdown delay: %v", err)
	}
	<-stopped
	if bodies, _ := inboxBodies(t, c, acc.Id); len(bodies) != 1 {
		t.Fatalf("%d messages stored, want the one sent while draining", len(bodies))
	}
}

// The ops endpoint counts sessions, messages and rejections by reason.
func TestInboundMetrics(t *testing.T) {
	c, _ := startMX(t)
	c.CreateAccount("ann@example.test", "pw-ann-secret")
	if err := sendSMTP(c.Inbound[0].SMTP, "s@example.org", []string{"ann@example.test"}, []byte("Subject: m\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	sendSMTP(c.Inbound[0].SMTP, "s@example.org", []string{"x@elsewhere.example"}, []byte("x\r\n"))
	resp, err := http.Get("http://" + c.Inbound[0].Ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"mailfleet_inbound_messages_total 1", `mailfleet_inbound_rejections_total{reason="relay-denied"} 1`, "mailfleet_inbound_sessions_total 2"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// Per-address rates: past --message-rate-per-ip a new MAIL gets 452 4.7.0
// (the session and the mail already accepted stay), past
// --conn-rate-per-ip a new connection gets a 421 4.7.0 greeting; both are
// counted in the metrics.
func TestInboundRateLimitsPerAddress(t *testing.T) {
	c, _ := startMX(t, "--message-rate-per-ip", "3", "--conn-rate-per-ip", "4")
	acc := c.CreateAccount("ann@example.test", "pw-ann-secret")
	r := rawSMTP(t, c.Inbound[0].SMTP) // connection 1
	r.cmd("EHLO client.example.org", "250")
	for i := range 3 {
		r.cmd("MAIL FROM:<s@example.org>", "250")
		r.cmd("RCPT TO:<ann@example.test>", "250")
		r.cmd("DATA", "354")
		r.cmd(fmt.Sprintf("Subject: %d\r\n\r\nwithin the rate\r\n.", i), "250")
	}
	r.cmd("MAIL FROM:<s@example.org>", "452 4.7.0")
	r.cmd("NOOP", "250") // the session goes on
	if bodies, _ := inboxBodies(t, c, acc.Id); len(bodies) != 3 {
		t.Fatalf("%d messages stored, want the 3 within the rate", len(bodies))
	}
	for range 3 { // connections 2 to 4
		rawSMTP(t, c.Inbound[0].SMTP).cmd("QUIT", "221")
	}
	conn, err := net.Dial("tcp", c.Inbound[0].SMTP)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	greeting, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(greeting, "421 4.7.0") {
		t.Fatalf("5th connection in a minute greeted with %q, want 421 4.7.0", greeting)
	}
	resp, err := http.Get("http://" + c.Inbound[0].Ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`mailfleet_inbound_rejections_total{reason="message-rate"} 1`, `mailfleet_inbound_rejections_total{reason="connection-rate"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
