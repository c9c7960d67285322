// Package dnsresolver resolves names through one configured DNS server (a
// cluster's resolver, or a loopback server in tests) or, unconfigured, the
// system's resolver. Every Mailfleet DNS lookup goes through it.
package dnsresolver

import (
	"context"
	"net"
	"time"
)

// Resolver wraps net.Resolver with a fixed server.
type Resolver struct {
	r       *net.Resolver
	Timeout time.Duration
}

// New returns a resolver that asks server ("host:port"), or the system's
// resolver when server is empty.
func New(server string) *Resolver {
	r := &net.Resolver{}
	if server != "" {
		r.PreferGo = true
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}
	}
	return &Resolver{r: r, Timeout: 10 * time.Second}
}

func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return r.r.LookupTXT(ctx, name)
}

func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return r.r.LookupMX(ctx, name)
}

func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return r.r.LookupIPAddr(ctx, host)
}

func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return r.r.LookupAddr(ctx, addr)
}

func (r *Resolver) LookupHost(ctx context.Context, host string) ([]string, error) {
	return r.r.LookupHost(ctx, host)
}

// TXT looks up TXT records with the resolver's own timeout (for libraries
// whose lookup hooks take no context).
func (r *Resolver) TXT(name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.Timeout)
	defer cancel()
	return r.r.LookupTXT(ctx, name)
}
