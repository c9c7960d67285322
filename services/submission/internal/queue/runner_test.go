package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/pkg/devpki"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// The DSN's Status for a recipient: the remote's permanent code as given; a
// transient one that lasted until the item expired as its permanent
// counterpart; a reply without an enhanced code as 5.0.0. A delayed one
// (RFC 3464 2.3.4) keeps the transient code.
func TestStatusOf(t *testing.T) {
	for result, want := range map[string]string{
		"550 5.1.1 no such user":                               "5.1.1",
		"expired after 120h0m0s; last: 452 4.2.2 mailbox full": "5.2.2",
		"expired after 5m0s; last: connection refused":         "5.0.0",
		"554 transaction failed":                               "5.0.0",
		"452 4.2.2 mailbox full":                               "5.2.2",
	} {
		if got := statusOf(result); got != want {
			t.Errorf("statusOf(%q) = %s, want %s", result, got, want)
		}
	}
	for result, want := range map[string]string{
		"451 4.7.1 greylisted":                 "4.7.1",
		"connection failed: i/o timeout":       "4.0.0",
		"connection failed: 4.7.5 MTA-STS ...": "4.7.5",
	} {
		if got := delayStatusOf(result); got != want {
			t.Errorf("delayStatusOf(%q) = %s, want %s", result, got, want)
		}
	}
}

// fakeDNS answers from maps; unknown names are NXDOMAIN.
type fakeDNS struct {
	mu  sync.Mutex
	mx  map[string][]*net.MX
	txt map[string][]string
	a   map[string]string
}

func (f *fakeDNS) notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (f *fakeDNS) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if mx, ok := f.mx[name]; ok {
		out := make([]*net.MX, len(mx)) // a fresh slice each time, as a cache would not give
		copy(out, mx)
		return out, nil
	}
	return nil, f.notFound(name)
}

func (f *fakeDNS) LookupTXT(_ context.Context, name string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if txt, ok := f.txt[name]; ok {
		return txt, nil
	}
	return nil, f.notFound(name)
}

func (f *fakeDNS) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ip, ok := f.a[host]; ok {
		return []net.IPAddr{{IP: net.ParseIP(ip)}}, nil
	}
	return nil, f.notFound(host)
}

// RFC 5321 5.1: MX hosts are tried in order of preference, and hosts of the
// same preference in random order. The order never breaks preference; over
// many lookups each of three equal hosts comes first about a third of the
// time (loose bound: 25–42 % of 3000).
func TestMXOrderRandomWithinPreference(t *testing.T) {
	dns := &fakeDNS{mx: map[string][]*net.MX{"example.test": {
		{Host: "b.example.test.", Pref: 10}, {Host: "low.example.test.", Pref: 20},
		{Host: "a.example.test.", Pref: 10}, {Host: "best.example.test.", Pref: 5}, {Host: "c.example.test.", Pref: 10},
	}}}
	r := New(nil, dns, Config{})
	first := map[string]int{}
	const n = 3000
	for range n {
		hosts, fromMX, err := r.hosts(context.Background(), "example.test")
		if err != nil || !fromMX || len(hosts) != 5 {
			t.Fatalf("hosts: %v %v %v", hosts, fromMX, err)
		}
		if hosts[0] != "best.example.test:25" || hosts[4] != "low.example.test:25" {
			t.Fatalf("preference order broken: %v", hosts)
		}
		first[hosts[1]]++
	}
	for _, h := range []string{"a.example.test:25", "b.example.test:25", "c.example.test:25"} {
		if got := first[h]; got < n/4 || got > n*42/100 {
			t.Errorf("%s came first among the preference-10 hosts %d times of %d, want about a third (%v)", h, got, n, first)
		}
	}
}

// A destination at its concurrency limit holds only its own jobs: the
// workers go on with other destinations, and an item whose every
// destination already has a full backlog is refused (to go back untried).
func TestSchedulerDestinationLimit(t *testing.T) {
	s := newScheduler(2)
	item := func(dest string) []*job {
		return []*job{{p: &pendingItem{item: &storagev1.QueueItem{}, leaseID: 1}, dest: dest}}
	}
	for range 2 {
		if !s.add(item("slow.test")) {
			t.Fatal("slow.test refused below its backlog")
		}
	}
	if s.add(item("slow.test")) {
		t.Fatal("slow.test accepted beyond its backlog")
	}
	for range 2 {
		s.add(item("fast.test"))
	}
	running := map[string]int{}
	for range 4 {
		j, run, ok := s.next()
		if !ok || !run {
			t.Fatal("no job")
		}
		running[j.dest]++
	}
	if running["slow.test"] != 2 || running["fast.test"] != 2 {
		t.Fatalf("running %v, want 2 of each (limit 2)", running)
	}
	// Two slow ones running, none waiting: room for a backlog of two.
	for range 2 {
		if !s.add(item("slow.test")) {
			t.Fatal("slow.test refused with its backlog empty")
		}
	}
	if s.add(item("slow.test")) {
		t.Fatal("slow.test accepted with its backlog full")
	}
	if !s.add(append(item("slow.test"), item("other.test")...)) {
		t.Fatal("an item that also goes elsewhere was refused")
	}
	st := s.stats()
	if st["slow.test"] != (DestinationStats{Waiting: 3, InFlight: 2}) || st["fast.test"] != (DestinationStats{InFlight: 2}) || st["other.test"] != (DestinationStats{Waiting: 1}) {
		t.Fatalf("stats %v", st)
	}
	// A fast job ends: the next job is not a slow one (at its limit).
	s.done(&job{dest: "fast.test"}, true)
	if j, _, _ := s.next(); j.dest != "other.test" {
		t.Fatalf("a %s job ran, want the other.test one (slow.test is at its limit)", j.dest)
	}
	// After close, what is left comes out not to be run.
	s.close()
	for {
		j, run, ok := s.next()
		if !ok {
			break
		}
		if run {
			t.Fatalf("job for %s to run after close", j.dest)
		}
	}
}

// testCA issues certificates for test servers.
type testCA struct {
	pki  *devpki.PKI
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	pki, err := devpki.Ensure(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(pki.CA())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &testCA{pki: pki, pool: pool}
}

func (ca *testCA) issue(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	certFile, keyFile, err := ca.pki.IssueServer(names[0], names...)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// RFC 8461 3.2: the policy's fields; 4.1: "*.example.com" stands for one
// leftmost label only.
func TestSTSPolicyParseAndMatch(t *testing.T) {
	p, err := parsePolicy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\nextension: ignored\r\n")
	if err != nil || p.mode != "enforce" || p.maxAge != 24*time.Hour || len(p.mx) != 2 {
		t.Fatalf("parse: %+v %v", p, err)
	}
	for host, want := range map[string]bool{
		"mail.example.com": true, "MAIL.example.com.": true, "other.example.com": false,
		"mx1.example.net": true, "example.net": false, "a.b.example.net": false,
	} {
		if p.matches(host) != want {
			t.Errorf("matches(%q) = %v, want %v", host, !want, want)
		}
	}
	for _, bad := range []string{
		"version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n", // version
		"version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n",  // mode
		"version: STSv1\nmode: enforce\nmax_age: 1\n",        // no mx
		"version: STSv1\nmode: enforce\nmx: a\n",             // no max_age
	} {
		if _, err := parsePolicy(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	if p, err := parsePolicy("version: STSv1\nmode: none\nmax_age: 99999999\n"); err != nil || p.maxAge != maxPolicyAge || p.active() {
		t.Errorf("mode none: %+v %v", p, err)
	}
	// RFC 8461 3.1: exactly one STSv1 record; other TXT records do not count.
	for _, c := range []struct {
		txts []string
		id   string
	}{
		{[]string{"v=STSv1; id=20240101T000000;"}, "20240101T000000"},
		{[]string{"v=spf1 -all", "v=STSv1; id=abc"}, "abc"},
		{[]string{"v=STSv1; id=abc", "v=STSv1; id=def"}, ""},
		{[]string{"v=STSv1; id=not-alnum"}, ""},
		{[]string{"v=STSv10; id=abc"}, ""},
	} {
		if id, _ := parseSTSRecord(c.txts); id != c.id {
			t.Errorf("parseSTSRecord(%q) = %q, want %q", c.txts, id, c.id)
		}
	}
}

// policyServer serves a policy over HTTPS on loopback with a certificate
// for mta-sts.<domain> from ca, and counts the fetches.
type policyServer struct {
	srv     *httptest.Server
	fetches atomic.Int32
	mu      sync.Mutex
	body    string
	status  int
}

func startPolicyServer(t *testing.T, ca *testCA, domain, body string) *policyServer {
	t.Helper()
	ps := &policyServer{body: body, status: http.StatusOK}
	ps.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ps.fetches.Add(1)
		ps.mu.Lock()
		defer ps.mu.Unlock()
		if req.URL.Path != "/.well-known/mta-sts.txt" || req.Host != "mta-sts."+domain {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(ps.status)
		fmt.Fprint(w, ps.body)
	}))
	ps.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "mta-sts."+domain)}}
	ps.srv.StartTLS()
	t.Cleanup(ps.srv.Close)
	return ps
}

func (ps *policyServer) port() int {
	_, port, _ := net.SplitHostPort(ps.srv.Listener.Addr().String())
	n, _ := strconv.Atoi(port)
	return n
}

func (ps *policyServer) set(status int, body string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.status, ps.body = status, body
}

// RFC 8461 3.3 and 5.1: the policy is fetched over HTTPS from
// mta-sts.<domain> (certificate checked), cached for max_age, fetched again
// when the TXT id changes; a failed fetch or a TXT record gone keeps the
// cached policy until it expires; an expired one with an unchanged id is
// fetched again.
func TestSTSPolicyCache(t *testing.T) {
	ca := newTestCA(t)
	ps := startPolicyServer(t, ca, "example.test", "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 3600\n")
	dns := &fakeDNS{
		txt: map[string][]string{"_mta-sts.example.test": {"v=STSv1; id=one"}},
		a:   map[string]string{"mta-sts.example.test": "127.0.0.1"},
	}
	c := newSTSCache(dns, ps.port(), ca.pool, testLogger(t))
	now := time.Now()
	c.now = func() time.Time { return now }
	ctx := context.Background()
	get := func(wantMode string, wantFetches int32) {
		t.Helper()
		p := c.policy(ctx, "example.test")
		mode := ""
		if p != nil {
			mode = p.mode
		}
		if mode != wantMode || ps.fetches.Load() != wantFetches {
			t.Fatalf("policy mode %q after %d fetches, want %q after %d", mode, ps.fetches.Load(), wantMode, wantFetches)
		}
	}
	get("enforce", 1)
	get("enforce", 1) // cached: same id
	now = now.Add(30 * time.Minute)
	ps.set(http.StatusOK, "version: STSv1\nmode: testing\nmx: mx.example.test\nmax_age: 600\n")
	get("enforce", 1) // still the same id: no fetch
	dns.mu.Lock()
	dns.txt["_mta-sts.example.test"] = []string{"v=STSv1; id=two"}
	dns.mu.Unlock()
	get("testing", 2) // new id: fetched again
	// Fetch failing with a new id: the cached policy goes on.
	dns.mu.Lock()
	dns.txt["_mta-sts.example.test"] = []string{"v=STSv1; id=three"}
	dns.mu.Unlock()
	ps.set(http.StatusNotFound, "")
	get("testing", 3)
	// TXT record gone: the cached policy holds until max_age (600 s)...
	dns.mu.Lock()
	delete(dns.txt, "_mta-sts.example.test")
	dns.mu.Unlock()
	now = now.Add(5 * time.Minute)
	get("testing", 3)
	// ...and not after.
	now = now.Add(6 * time.Minute)
	get("", 3)
	// Expired with an unchanged id: fetched again.
	dns.mu.Lock()
	dns.txt["_mta-sts.example.test"] = []string{"v=STSv1; id=two"}
	dns.mu.Unlock()
	ps.set(http.StatusOK, "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 60\n")
	get("enforce", 4)
	now = now.Add(61 * time.Second)
	get("enforce", 5)

	// A policy host whose certificate does not verify gives no policy.
	other := startPolicyServer(t, newTestCA(t), "other.test", "version: STSv1\nmode: enforce\nmx: mx.other.test\nmax_age: 3600\n")
	dns.mu.Lock()
	dns.txt["_mta-sts.other.test"] = []string{"v=STSv1; id=x"}
	dns.a["mta-sts.other.test"] = "127.0.0.1"
	dns.mu.Unlock()
	c2 := newSTSCache(dns, other.port(), ca.pool, testLogger(t))
	if p := c2.policy(ctx, "other.test"); p != nil || other.fetches.Load() != 0 {
		t.Fatalf("policy over an unverified certificate: %+v (%d fetches)", p, other.fetches.Load())
	}
	// A redirect is not followed (RFC 8461 3.3).
	ps.set(http.StatusFound, "")
	now = now.Add(2 * time.Minute)
	if p := c.policy(ctx, "example.test"); p != nil {
		t.Fatalf("policy through a redirect: %+v", p)
	}
	if !strings.Contains(ps.srv.URL, "127.0.0.1") {
		t.Fatalf("policy server not on loopback: %s", ps.srv.URL)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}
