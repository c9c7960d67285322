// Package dnsresolver resolves names through one configured DNS server (a
// cluster's resolver, or a loopback server in tests) or, unconfigured, the
// nameservers of /etc/resolv.conf. Every Mailfleet DNS lookup goes through
// it.
//
// It asks the server itself (github.com/miekg/dns) rather than through
// net.Resolver, which hides TTLs, so that it can:
//   - cache answers for their TTL (capped) and negative answers (NXDOMAIN,
//     no data) for the SOA minimum of the authority section (RFC 2308 5),
//     in a bounded LRU;
//   - bound every lookup: each try waits Options.Timeout over UDP (TCP when
//     the answer is truncated), at most Options.Tries tries, so an
//     unreachable or packet-dropping server costs Tries×Timeout (800 ms by
//     default) per lookup, never the 10 s+ of the system's defaults;
//   - count cache hits, lookup latency and failures for Prometheus.
//
// Errors are *net.DNSError, as net.Resolver's: IsNotFound for NXDOMAIN and
// no data, IsTemporary (and IsTimeout) when no server answered, so callers
// and libraries (SPF, DKIM, DMARC) tell a permanent "none" from a
// temporary failure the usual way.
package dnsresolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Options tune a Resolver; zero values take the defaults.
type Options struct {
	// Server is "host:port"; empty: the nameservers of /etc/resolv.conf.
	Server string
	// Timeout bounds each try (default 400 ms).
	Timeout time.Duration
	// Tries is how many times a query is sent, to the servers in turn
	// (default 2).
	Tries int
	// CacheSize bounds the cached answers (default 10 000; negative: no
	// cache).
	CacheSize int
	// MaxTTL caps how long a positive answer is kept (default 1 h).
	MaxTTL time.Duration
	// MaxNegativeTTL caps how long NXDOMAIN and no-data answers are kept
	// (default 5 min; RFC 2308 5 leaves the cap to the resolver).
	MaxNegativeTTL time.Duration
}

// Resolver looks names up, with a cache. It is safe for concurrent use.
type Resolver struct {
	// Timeout bounds a lookup made through TXT (for libraries whose lookup
	// hooks take no context).
	Timeout time.Duration

	opts    Options
	servers []string
	cache   *cache
	metrics *metrics
	now     func() time.Time // a test's clock
}

// New returns a resolver that asks server ("host:port"), or the
// nameservers of /etc/resolv.conf when server is empty, with the default
// options.
func New(server string) *Resolver { return NewWithOptions(Options{Server: server}) }

// NewWithOptions returns a resolver tuned by o.
func NewWithOptions(o Options) *Resolver {
	if o.Timeout <= 0 {
		o.Timeout = 400 * time.Millisecond
	}
	if o.Tries <= 0 {
		o.Tries = 2
	}
	if o.CacheSize == 0 {
		o.CacheSize = 10000
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = time.Hour
	}
	if o.MaxNegativeTTL <= 0 {
		o.MaxNegativeTTL = 5 * time.Minute
	}
	servers := []string{o.Server}
	if o.Server == "" {
		servers = systemServers("/etc/resolv.conf")
	}
	return &Resolver{Timeout: 5 * time.Second, opts: o, servers: servers,
		cache: newCache(o.CacheSize), metrics: newMetrics(), now: time.Now}
}

// systemServers reads the nameservers of a resolv.conf file; without any,
// the local resolver's address, as the C library does.
func systemServers(path string) []string {
	conf, err := dns.ClientConfigFromFile(path)
	if err != nil || len(conf.Servers) == 0 {
		return []string{"127.0.0.1:53"}
	}
	var out []string
	for _, s := range conf.Servers {
		out = append(out, net.JoinHostPort(s, conf.Port))
	}
	return out
}

func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range rrs {
		// One string per record, its character-strings joined, as
		// net.Resolver does (RFC 7208 3.3).
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}

func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := r.lookup(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var out []*net.MX
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	slices.SortStableFunc(out, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return out, nil
}

// LookupIPAddr asks for A and AAAA records at once; it fails only when
// neither gave an address.
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IPAddr{{IP: ip}}, nil
	}
	if h := strings.ToLower(strings.TrimSuffix(host, ".")); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		// RFC 6761 6.3: never asked of a server.
		return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}, {IP: net.IPv6loopback}}, nil
	}
	var (
		wg         sync.WaitGroup
		rrs4, rrs6 []dns.RR
		err4, err6 error
	)
	wg.Go(func() { rrs4, err4 = r.lookup(ctx, host, dns.TypeA) })
	wg.Go(func() { rrs6, err6 = r.lookup(ctx, host, dns.TypeAAAA) })
	wg.Wait()
	var out []net.IPAddr
	for _, rr := range append(rrs4, rrs6...) {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, net.IPAddr{IP: rr.A})
		case *dns.AAAA:
			out = append(out, net.IPAddr{IP: rr.AAAA})
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	// A temporary failure of either says more than a "not found".
	for _, err := range []error{err4, err6} {
		var de *net.DNSError
		if errors.As(err, &de) && de.Temporary() {
			return nil, err
		}
	}
	if err4 != nil {
		return nil, err4
	}
	if err6 != nil {
		return nil, err6
	}
	return nil, notFound(host, "")
}

func (r *Resolver) LookupHost(ctx context.Context, host string) ([]string, error) {
	addrs, err := r.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.IP.String()
	}
	return out, nil
}

// LookupAddr returns the PTR names of an address, each ending in a dot.
func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	rrs, err := r.lookup(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, nil
}

// TXT looks up TXT records with the resolver's own timeout (for libraries
// whose lookup hooks take no context).
func (r *Resolver) TXT(name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.Timeout)
	defer cancel()
	return r.LookupTXT(ctx, name)
}

// lookup returns the records of type qtype for name, from the cache or the
// servers. A name with no such records is a not-found error.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	fqdn := dns.Fqdn(strings.ToLower(name))
	if _, ok := dns.IsDomainName(fqdn); !ok || strings.Contains(fqdn, " ") {
		return nil, notFound(name, "")
	}
	key := cacheKey{fqdn, qtype}
	if e, ok := r.cache.get(key, r.now()); ok {
		r.metrics.hit()
		return e.result(name)
	}
	r.metrics.miss()
	start := time.Now()
	resp, server, err := r.exchange(ctx, fqdn, qtype)
	r.metrics.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, err
	}
	e, ttl := r.entryOf(resp, qtype, server)
	if ttl > 0 {
		r.cache.put(key, e, r.now().Add(ttl))
	}
	return e.result(name)
}

// entryOf turns an answer into what is cached and for how long.
func (r *Resolver) entryOf(resp *dns.Msg, qtype uint16, server string) (*entry, time.Duration) {
	e := &entry{server: server}
	minTTL := uint32(0)
	for i, rr := range resp.Answer {
		if i == 0 || rr.Header().Ttl < minTTL {
			minTTL = rr.Header().Ttl // a CNAME on the way counts too
		}
		if rr.Header().Rrtype == qtype {
			e.rrs = append(e.rrs, rr)
		}
	}
	if resp.Rcode == dns.RcodeSuccess && len(e.rrs) > 0 {
		return e, min(time.Duration(minTTL)*time.Second, r.opts.MaxTTL)
	}
	// NXDOMAIN or no data (RFC 2308 2.1, 2.2): kept for the lesser of the
	// SOA's TTL and its MINIMUM field (RFC 2308 5); without an SOA not at
	// all ("SHOULD NOT be cached").
	e.rrs = nil
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return e, min(time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second, r.opts.MaxNegativeTTL)
		}
	}
	return e, 0
}

// exchange asks the servers in turn, Tries times at most, each try bounded
// by Timeout; a truncated UDP answer is asked again over TCP.
func (r *Resolver) exchange(ctx context.Context, fqdn string, qtype uint16) (*dns.Msg, string, error) {
	var lastErr error
	var server string
	timedOut := false
	for try := 0; try < r.opts.Tries && ctx.Err() == nil; try++ {
		server = r.servers[try%len(r.servers)]
		q := new(dns.Msg)
		q.SetQuestion(fqdn, qtype) // a fresh ID every try
		q.SetEdns0(1232, false)    // the DNS flag day 2020 size: no fragments
		resp, err := r.exchangeOne(ctx, q, server, "udp")
		if err == nil && resp.Truncated {
			resp, err = r.exchangeOne(ctx, q, server, "tcp")
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
				timedOut = true
				r.metrics.failure("timeout")
			} else {
				r.metrics.failure("network")
			}
			lastErr = err
			continue
		}
		if resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError {
			return resp, server, nil
		}
		// SERVFAIL, REFUSED…: the server could not answer now.
		rcode := strings.ToLower(dns.RcodeToString[resp.Rcode])
		r.metrics.failure(rcode)
		lastErr = fmt.Errorf("server answered %s", dns.RcodeToString[resp.Rcode])
	}
	if lastErr == nil {
		lastErr = ctx.Err()
		timedOut = true
	}
	return nil, server, &net.DNSError{Err: lastErr.Error(), Name: strings.TrimSuffix(fqdn, "."), Server: server,
		IsTimeout: timedOut, IsTemporary: true}
}

func (r *Resolver) exchangeOne(ctx context.Context, q *dns.Msg, server, network string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: r.opts.Timeout}
	resp, _, err := c.ExchangeContext(ctx, q, server)
	return resp, err
}

func notFound(name, server string) error {
	return &net.DNSError{Err: "no such host", Name: name, Server: server, IsNotFound: true}
}

// LookupIP returns the addresses of host for network "ip4" (A), "ip6"
// (AAAA) or "ip" (both), as net.Resolver.LookupIP does.
func (r *Resolver) LookupIP(ctx context.Context, network, host string) ([]net.IP, error) {
	var qtype uint16
	switch network {
	case "ip4":
		qtype = dns.TypeA
	case "ip6":
		qtype = dns.TypeAAAA
	default:
		addrs, err := r.LookupIPAddr(ctx, host)
		var out []net.IP
		for _, a := range addrs {
			out = append(out, a.IP)
		}
		return out, err
	}
	rrs, err := r.lookup(ctx, host, qtype)
	if err != nil {
		return nil, err
	}
	var out []net.IP
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A)
		case *dns.AAAA:
			out = append(out, rr.AAAA)
		}
	}
	return out, nil
}
