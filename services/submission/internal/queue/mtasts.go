package queue

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MTA-STS (RFC 8461): a domain publishes _mta-sts.<domain> TXT "v=STSv1;
// id=…" and a policy at https://mta-sts.<domain>/.well-known/mta-sts.txt
// naming its MX hosts and a mode. Under mode enforce we deliver only to those
// hosts, over TLS with a certificate valid for the host's name; under testing
// we deliver anyway and report.
//
// Policies are cached in memory, per pod: they are small, fetched once per
// domain and max_age (or TXT id change), and the queue runs in few pods. The
// price is that a restarted pod fetches again, so an attacker who can block
// that fetch at that moment downgrades the domain to plain opportunistic TLS
// (RFC 8461 10.2 assumes a cache that lives longer); a cache in the storage
// tier would close that gap.

// stsPolicy is a validated policy (RFC 8461 3.2).
type stsPolicy struct {
	id      string // the TXT record's id when it was fetched
	mode    string // enforce, testing or none
	mx      []string
	maxAge  time.Duration
	expires time.Time
}

// active reports whether the policy asks anything of MX hosts.
func (p *stsPolicy) active() bool { return p != nil && (p.mode == "enforce" || p.mode == "testing") }

func (p *stsPolicy) enforce() bool { return p != nil && p.mode == "enforce" }

// matches reports whether an MX host is named by the policy (RFC 8461 4.1):
// exactly, or by a "*." pattern that stands for one leftmost label.
func (p *stsPolicy) matches(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.mx {
		pat = strings.ToLower(strings.TrimSuffix(pat, "."))
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, parent, found := strings.Cut(host, ".")
			if found && label != "" && parent == rest {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// maxPolicyAge is the largest max_age allowed (RFC 8461 3.2: 31557600).
const maxPolicyAge = 31557600 * time.Second

// parsePolicy reads a policy body (RFC 8461 3.2): "key: value" lines ending
// in CRLF or LF; version STSv1, mode and max_age required, mx at least once
// unless the mode is none. Unknown keys are ignored.
func parsePolicy(body string) (*stsPolicy, error) {
	p := &stsPolicy{}
	var version string
	haveAge := false
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("malformed policy line %q", line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "version":
			version = value
		case "mode":
			p.mode = value
		case "max_age":
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil || len(value) > 10 {
				return nil, fmt.Errorf("bad max_age %q", value)
			}
			p.maxAge = min(time.Duration(n)*time.Second, maxPolicyAge)
			haveAge = true
		case "mx":
			p.mx = append(p.mx, value)
		}
	}
	switch {
	case version != "STSv1":
		return nil, fmt.Errorf("policy version %q, want STSv1", version)
	case p.mode != "enforce" && p.mode != "testing" && p.mode != "none":
		return nil, fmt.Errorf("bad mode %q", p.mode)
	case !haveAge:
		return nil, errors.New("no max_age")
	case p.mode != "none" && len(p.mx) == 0:
		return nil, errors.New("no mx")
	}
	return p, nil
}

// parseSTSRecord returns the id of a domain's TXT records if exactly one is
// an STSv1 record (RFC 8461 3.1: several mean none).
func parseSTSRecord(txts []string) (string, bool) {
	var id string
	n := 0
	for _, txt := range txts {
		if !strings.HasPrefix(txt, "v=STSv1;") && txt != "v=STSv1" {
			continue
		}
		n++
		for _, field := range strings.Split(txt, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(field), "=")
			if k == "id" {
				id = v
			}
		}
	}
	if n != 1 || id == "" || len(id) > 32 {
		return "", false
	}
	for _, c := range id {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return "", false
		}
	}
	return id, true
}

// stsCache fetches and caches policies per domain.
type stsCache struct {
	resolver Resolver
	client   *http.Client
	log      *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	policies map[string]*stsPolicy
}

func newSTSCache(resolver Resolver, port int, roots *x509.CertPool, log *slog.Logger) *stsCache {
	c := &stsCache{resolver: resolver, log: log, now: time.Now, policies: map[string]*stsPolicy{}}
	// The policy host is resolved through the runner's resolver and dialled
	// on port (443 but in tests); its certificate must be valid for
	// mta-sts.<domain> under roots (RFC 8461 3.3).
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ips, err := resolver.LookupIPAddr(ctx, host)
			if err != nil {
				return nil, err
			}
			var d net.Dialer
			var lastErr error = fmt.Errorf("no address for %s", host)
			for _, ip := range ips {
				conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.IP.String(), strconv.Itoa(port)))
				if err == nil {
					return conn, nil
				}
				lastErr = err
			}
			return nil, lastErr
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 20 * time.Second,
		MaxIdleConns:        10,
		IdleConnTimeout:     time.Minute,
	}
	c.client = &http.Client{
		Transport: transport,
		Timeout:   time.Minute,
		// RFC 8461 3.3: redirects must not be followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c
}

// policy returns the policy that applies to domain now, or nil. The TXT
// record is looked up each time: an unchanged id keeps the cached policy
// (until its max_age), a new id fetches again. A failed fetch or lookup
// keeps a cached policy that has not expired (RFC 8461 5.1); with none,
// delivery goes on as if the domain had no policy.
func (c *stsCache) policy(ctx context.Context, domain string) *stsPolicy {
	now := c.now()
	c.mu.Lock()
	cached := c.policies[domain]
	if cached != nil && now.After(cached.expires) {
		delete(c.policies, domain)
		cached = nil
	}
	c.mu.Unlock()
	txts, err := c.resolver.LookupTXT(ctx, "_mta-sts."+domain)
	if err != nil {
		return cached
	}
	id, ok := parseSTSRecord(txts)
	if !ok || (cached != nil && cached.id == id) {
		return cached
	}
	p, err := c.fetch(ctx, domain)
	if err != nil {
		c.log.Warn("MTA-STS policy fetch failed", "domain", domain, "err", err, "cached", cached != nil)
		return cached
	}
	p.id, p.expires = id, now.Add(p.maxAge)
	c.mu.Lock()
	c.policies[domain] = p
	c.mu.Unlock()
	c.log.Info("MTA-STS policy fetched", "domain", domain, "id", id, "mode", p.mode, "max_age", p.maxAge)
	return p
}

// fetch gets and parses a domain's policy (RFC 8461 3.3).
func (c *stsCache) fetch(ctx context.Context, domain string) (*stsPolicy, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://mta-sts."+domain+"/.well-known/mta-sts.txt", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return nil, fmt.Errorf("content type %q, want text/plain", ct)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10+1))
	if err != nil {
		return nil, err
	}
	if len(body) > 64<<10 {
		return nil, errors.New("policy larger than 64 KiB")
	}
	return parsePolicy(string(body))
}
