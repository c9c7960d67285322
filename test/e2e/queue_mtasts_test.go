package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/pkg/devpki"
	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/fakemx"
)

// RFC 8461: three domains publish an MTA-STS policy (TXT record on the
// loopback DNS, policy on a loopback HTTPS server with a certificate from a
// test CA the runner is told to trust):
//   - good.example, enforce: its MX offers STARTTLS with a certificate for
//     its name → delivered (4.2);
//   - bad.example, enforce: its MX's certificate names another host → not
//     delivered, deferred, and bounced when the queue lifetime ends (5, with
//     the 4.7.5 reason the DSN carries as 5.7.5);
//   - testing.example, testing: the same bad certificate → delivered anyway
//     and reported (5: "testing" reports but delivers).
func TestQueueMTASTS(t *testing.T) {
	pki, err := devpki.Ensure(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	serverTLS := func(name string, hosts ...string) *tls.Config {
		t.Helper()
		certFile, keyFile, err := pki.IssueServer(name, hosts...)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	dns, _, port := startRemoteMX(t)
	domains := []struct {
		name, ip, mode string
		tls            *tls.Config
		mx             *fakemx.Server
	}{
		{name: "good.example", ip: "127.0.0.3", mode: "enforce", tls: serverTLS("mx-good", "mx.good.example")},
		{name: "bad.example", ip: "127.0.0.4", mode: "enforce", tls: serverTLS("mx-bad", "mx.elsewhere.example")},
		{name: "testing.example", ip: "127.0.0.5", mode: "testing", tls: serverTLS("mx-testing", "mx.elsewhere.example")},
	}
	policies := map[string]string{}
	var policyHosts []string
	for i := range domains {
		d := &domains[i]
		if d.mx, err = fakemx.StartOn(d.ip+":"+port, d.tls); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.mx.Close)
		dns.MX(d.name, "mx."+d.name, 10)
		dns.A("mx."+d.name, d.ip)
		dns.TXT("_mta-sts."+d.name, "v=STSv1; id=20260101T000000;")
		dns.A("mta-sts."+d.name, "127.0.0.1")
		policyHosts = append(policyHosts, "mta-sts."+d.name)
		policies["mta-sts."+d.name] = fmt.Sprintf("version: STSv1\r\nmode: %s\r\nmx: mx.%s\r\nmax_age: 86400\r\n", d.mode, d.name)
	}
	policySrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p, ok := policies[req.Host]
		if !ok || req.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, p)
	}))
	policySrv.TLS = serverTLS("policy", policyHosts...)
	policySrv.StartTLS()
	t.Cleanup(policySrv.Close)
	_, policyPort, _ := net.SplitHostPort(policySrv.Listener.Addr().String())

	c := cluster.Start(t, binDir, minioServer, cluster.Options{Submission: 1, DNS: dns.Addr,
		SubmissionArgs: []string{"--remote-port", port, "--retry-schedule", "1s", "--queue-lifetime", "8s",
			"--mta-sts-port", policyPort, "--outbound-ca", pki.CA()}})
	amy := c.CreateAccount("amy@example.test", "amy-secret-pw")
	for _, d := range domains {
		if err := submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"u@" + d.name},
			[]byte("From: amy@example.test\r\nSubject: to "+d.name+"\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	good, bad, tested := domains[0].mx, domains[1].mx, domains[2].mx
	waitFor(t, "delivery to good.example (enforce, valid certificate)", 15*time.Second, func() bool { return len(good.Received()) == 1 })
	waitFor(t, "delivery to testing.example (testing, bad certificate)", 15*time.Second, func() bool { return len(tested.Received()) == 1 })
	var dsn string
	waitFor(t, "the DSN for bad.example", 30*time.Second, func() bool {
		bodies, _ := inboxBodies(t, c, amy.Id)
		if len(bodies) > 0 {
			dsn = string(bodies[0])
		}
		return len(bodies) > 0
	})
	for _, want := range []string{"Final-Recipient: rfc822; u@bad.example", "Action: failed", "Status: 5.7.5", "MTA-STS policy of bad.example"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	if len(bad.Received()) != 0 || bad.Connections() == 0 {
		t.Fatalf("bad.example: %d messages over %d connections, want none over at least one (the TLS handshake refused)", len(bad.Received()), bad.Connections())
	}
	ops := c.Submission[0].Ops
	if v := metric(t, ops, `mailfleet_queue_mta_sts_failures_total{mode="enforce",reason="certificate"}`); v < 1 {
		t.Errorf("enforce certificate failures: %v", v)
	}
	if v := metric(t, ops, `mailfleet_queue_mta_sts_failures_total{mode="testing",reason="certificate"}`); v < 1 {
		t.Errorf("testing certificate failures: %v", v)
	}
}
