package dnsresolver

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// server is a loopback DNS server answering from a function, counting the
// queries it gets per name and type.
type server struct {
	addr   string
	answer func(q dns.Question, tcp bool) *dns.Msg
	mu     sync.Mutex
	counts map[string]int
	udp    *dns.Server
	tcp    *dns.Server
}

func startServer(t *testing.T, answer func(q dns.Question, tcp bool) *dns.Msg) *server {
	t.Helper()
	s := &server{answer: answer, counts: map[string]int{}}
	var pc net.PacketConn
	var ln net.Listener
	for range 20 { // one port for UDP and TCP; another process may hold the TCP one
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if ln == nil {
		t.Fatal("no port for UDP and TCP")
	}
	s.addr = pc.LocalAddr().String()
	s.udp = &dns.Server{PacketConn: pc, Handler: s.handler(false)}
	s.tcp = &dns.Server{Listener: ln, Handler: s.handler(true)}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	t.Cleanup(func() { s.udp.Shutdown(); s.tcp.Shutdown() })
	return s
}

func (s *server) handler(tcp bool) dns.HandlerFunc {
	return func(w dns.ResponseWriter, req *dns.Msg) {
		q := req.Question[0]
		s.mu.Lock()
		s.counts[strings.ToLower(q.Name)+"/"+dns.TypeToString[q.Qtype]]++
		answer := s.answer
		s.mu.Unlock()
		resp := answer(q, tcp)
		rcode := resp.Rcode
		resp.SetReply(req) // which resets the rcode
		resp.Rcode = rcode
		w.WriteMsg(resp)
	}
}

func (s *server) setAnswer(answer func(q dns.Question, tcp bool) *dns.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answer = answer
}

func (s *server) count(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[dns.Fqdn(name)+"/"+dns.TypeToString[qtype]]
}

func rr(t *testing.T, text string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(text)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// zone answers from records; names under example.test without records are
// NXDOMAIN, names with records but not of the asked type are "no data";
// both carry the zone's SOA (MINIMUM 30 s, its own TTL 3600) when soa is set.
func zone(t *testing.T, soa bool, records ...string) func(dns.Question, bool) *dns.Msg {
	var rrs []dns.RR
	for _, text := range records {
		rrs = append(rrs, rr(t, text))
	}
	soaRR := rr(t, "example.test. 3600 IN SOA ns.example.test. host.example.test. 1 7200 900 1209600 30")
	return func(q dns.Question, _ bool) *dns.Msg {
		m := new(dns.Msg)
		known := false
		for _, r := range rrs {
			if strings.EqualFold(r.Header().Name, q.Name) {
				known = true
				if r.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, r)
				}
			}
		}
		if !known {
			m.Rcode = dns.RcodeNameError
		}
		if len(m.Answer) == 0 && soa {
			m.Ns = append(m.Ns, soaRR)
		}
		return m
	}
}

// clock is a test's time, moved by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestResolver(addr string, o Options) (*Resolver, *clock) {
	o.Server = addr
	r := NewWithOptions(o)
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	r.now = c.now
	return r, c
}

// A positive answer is served from the cache until its TTL runs out, then
// asked again (RFC 1035 3.2.1: TTL is how long the record may be cached).
func TestCacheRespectsTTL(t *testing.T) {
	s := startServer(t, zone(t, true, `a.example.test. 60 IN TXT "v=spf1 -all"`))
	r, clk := newTestResolver(s.addr, Options{})
	ctx := context.Background()
	for i, step := range []struct {
		advance time.Duration
		queries int
	}{{0, 1}, {30 * time.Second, 1}, {29 * time.Second, 1}, {2 * time.Second, 2}, {59 * time.Second, 2}, {time.Second, 3}} {
		clk.advance(step.advance)
		txt, err := r.LookupTXT(ctx, "A.example.test")
		if err != nil || len(txt) != 1 || txt[0] != "v=spf1 -all" {
			t.Fatalf("step %d: %q %v", i, txt, err)
		}
		if got := s.count("a.example.test", dns.TypeTXT); got != step.queries {
			t.Fatalf("step %d: the server was asked %d times, want %d", i, got, step.queries)
		}
	}
}

// The cache keeps a positive answer no longer than MaxTTL, whatever its TTL.
func TestCacheCapsTTL(t *testing.T) {
	s := startServer(t, zone(t, true, "mx.example.test. 604800 IN A 192.0.2.1"))
	r, clk := newTestResolver(s.addr, Options{MaxTTL: time.Minute})
	for range 2 {
		if _, err := r.LookupHost(context.Background(), "mx.example.test"); err != nil {
			t.Fatal(err)
		}
		clk.advance(61 * time.Second)
	}
	if got := s.count("mx.example.test", dns.TypeA); got != 2 {
		t.Fatalf("asked %d times, want 2 (the cap is a minute)", got)
	}
}

// NXDOMAIN and no-data answers are cached for min(SOA TTL, SOA MINIMUM)
// (RFC 2308 5), capped by MaxNegativeTTL; without an SOA they are not
// cached (RFC 2308 5: "SHOULD NOT be cached").
func TestNegativeCaching(t *testing.T) {
	ctx := context.Background()
	t.Run("nxdomain", func(t *testing.T) {
		s := startServer(t, zone(t, true))
		r, clk := newTestResolver(s.addr, Options{})
		for i, step := range []struct {
			advance time.Duration
			queries int
		}{{0, 1}, {29 * time.Second, 1}, {time.Second, 2}} {
			clk.advance(step.advance)
			_, err := r.LookupTXT(ctx, "_dmarc.nowhere.example.test")
			var de *net.DNSError
			if !errors.As(err, &de) || !de.IsNotFound || de.Temporary() {
				t.Fatalf("step %d: %v, want not found", i, err)
			}
			if got := s.count("_dmarc.nowhere.example.test", dns.TypeTXT); got != step.queries {
				t.Fatalf("step %d: asked %d times, want %d", i, got, step.queries)
			}
		}
	})
	t.Run("nodata", func(t *testing.T) {
		s := startServer(t, zone(t, true, "host.example.test. 60 IN A 192.0.2.7"))
		r, clk := newTestResolver(s.addr, Options{})
		for range 2 {
			if _, err := r.LookupMX(ctx, "host.example.test"); err == nil {
				t.Fatal("MX of a name with only an A record was found")
			}
			clk.advance(10 * time.Second)
		}
		if got := s.count("host.example.test", dns.TypeMX); got != 1 {
			t.Fatalf("asked %d times, want 1", got)
		}
	})
	t.Run("capped", func(t *testing.T) {
		s := startServer(t, zone(t, true))
		r, clk := newTestResolver(s.addr, Options{MaxNegativeTTL: 10 * time.Second})
		for range 2 {
			r.LookupTXT(ctx, "x.example.test")
			clk.advance(11 * time.Second)
		}
		if got := s.count("x.example.test", dns.TypeTXT); got != 2 {
			t.Fatalf("asked %d times, want 2", got)
		}
	})
	t.Run("no SOA", func(t *testing.T) {
		s := startServer(t, zone(t, false))
		r, _ := newTestResolver(s.addr, Options{})
		for range 2 {
			r.LookupTXT(ctx, "y.example.test")
		}
		if got := s.count("y.example.test", dns.TypeTXT); got != 2 {
			t.Fatalf("asked %d times, want 2", got)
		}
	})
}

// The cache holds at most CacheSize answers and drops the least recently
// used first.
func TestCacheSizeBound(t *testing.T) {
	var records []string
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		records = append(records, n+".example.test. 300 IN A 192.0.2.1")
	}
	s := startServer(t, zone(t, true, records...))
	r, _ := newTestResolver(s.addr, Options{CacheSize: 3})
	ctx := context.Background()
	look := func(n string) {
		t.Helper()
		if _, err := r.lookup(ctx, n+".example.test", dns.TypeA); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"a", "b", "c", "a", "d", "e"} { // b, then c, are the oldest when d and e come
		look(n)
	}
	if n := r.cache.len(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	look("a")
	look("b")
	if got := s.count("a.example.test", dns.TypeA); got != 1 {
		t.Fatalf("a (recently used) asked %d times, want 1", got)
	}
	if got := s.count("b.example.test", dns.TypeA); got != 2 {
		t.Fatalf("b (evicted) asked %d times, want 2", got)
	}
}

// A server that never answers costs Tries×Timeout, and the error is a
// temporary one (what SPF calls temperror, RFC 7208 2.6.6).
func TestUnansweredQueriesAreBounded(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var mu sync.Mutex
	got := 0
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			mu.Lock()
			got++
			mu.Unlock()
		}
	}()
	r := New(pc.LocalAddr().String())
	start := time.Now()
	_, err = r.LookupTXT(context.Background(), "example.org")
	elapsed := time.Since(start)
	var de *net.DNSError
	if !errors.As(err, &de) || !de.Temporary() || !de.IsTimeout || de.IsNotFound {
		t.Fatalf("%v, want a temporary timeout", err)
	}
	if elapsed < 700*time.Millisecond || elapsed > 1500*time.Millisecond {
		t.Fatalf("took %v, want about 2 × 400 ms", elapsed)
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if got != 2 {
		t.Fatalf("%d queries sent, want 2 tries", got)
	}
	// A caller's shorter deadline wins.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := r.LookupMX(ctx, "example.org"); err == nil || time.Since(start) > 300*time.Millisecond {
		t.Fatalf("with a 100 ms deadline: %v after %v", err, time.Since(start))
	}
}

// A truncated UDP answer is asked again over TCP (RFC 7766 5); SERVFAIL is
// a temporary failure and is not cached.
func TestTruncationAndServfail(t *testing.T) {
	long := strings.Repeat("x", 250)
	s := startServer(t, func(q dns.Question, tcp bool) *dns.Msg {
		m := new(dns.Msg)
		switch {
		case q.Name == "big.example.test." && !tcp:
			m.Truncated = true
		case q.Name == "big.example.test.":
			for i := 0; i < 20; i++ {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
					Txt: []string{long, long}})
			}
		default:
			m.Rcode = dns.RcodeServerFailure
		}
		return m
	})
	r, _ := newTestResolver(s.addr, Options{})
	txt, err := r.LookupTXT(context.Background(), "big.example.test")
	if err != nil || len(txt) != 20 || txt[0] != long+long {
		t.Fatalf("%d records, %v", len(txt), err)
	}
	for range 2 {
		_, err = r.LookupTXT(context.Background(), "broken.example.test")
		var de *net.DNSError
		if !errors.As(err, &de) || !de.Temporary() || de.IsNotFound {
			t.Fatalf("SERVFAIL: %v, want a temporary error", err)
		}
	}
	if got := s.count("broken.example.test", dns.TypeTXT); got != 4 {
		t.Fatalf("SERVFAIL asked %d times, want 2 tries × 2 lookups (never cached)", got)
	}
}

// MX records come sorted by preference; a CNAME's shorter TTL bounds the
// cached answer's; addresses and PTR names come through.
func TestRecordTypes(t *testing.T) {
	s := startServer(t, zone(t, true,
		"example.test. 300 IN MX 20 b.example.test.", "example.test. 300 IN MX 10 a.example.test.",
		"www.example.test. 5 IN CNAME host.example.test.", "host.example.test. 300 IN A 192.0.2.9",
		"host.example.test. 300 IN AAAA 2001:db8::9",
		"9.2.0.192.in-addr.arpa. 300 IN PTR host.example.test."))
	r, clk := newTestResolver(s.addr, Options{})
	ctx := context.Background()
	mxs, err := r.LookupMX(ctx, "example.test")
	if err != nil || len(mxs) != 2 || mxs[0].Host != "a.example.test." || mxs[0].Pref != 10 {
		t.Fatalf("%v %v", mxs, err)
	}
	host := zone(t, true, "host.example.test. 300 IN A 192.0.2.9")
	cname := rr(t, "www.example.test. 5 IN CNAME host.example.test.")
	s.setAnswer(func(q dns.Question, tcp bool) *dns.Msg { // a CNAME chain, as a recursive resolver gives it
		m := host(dns.Question{Name: "host.example.test.", Qtype: q.Qtype}, tcp)
		m.Answer = append([]dns.RR{cname}, m.Answer...)
		return m
	})
	for range 2 {
		addrs, err := r.LookupHost(ctx, "www.example.test")
		if err != nil || len(addrs) != 1 || addrs[0] != "192.0.2.9" {
			t.Fatalf("%v %v", addrs, err)
		}
		clk.advance(6 * time.Second)
	}
	if got := s.count("www.example.test", dns.TypeA); got != 2 {
		t.Fatalf("asked %d times, want 2 (the CNAME's TTL is 5 s)", got)
	}
	s.setAnswer(zone(t, true, "9.2.0.192.in-addr.arpa. 300 IN PTR host.example.test."))
	names, err := r.LookupAddr(ctx, "192.0.2.9")
	if err != nil || len(names) != 1 || names[0] != "host.example.test." {
		t.Fatalf("%v %v", names, err)
	}
}
