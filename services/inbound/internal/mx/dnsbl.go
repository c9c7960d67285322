package mx

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// IPResolver is what the DNSBL checks need of pkg/dnsresolver.
type IPResolver interface {
	LookupIP(ctx context.Context, network, host string) ([]net.IP, error)
}

// dnsblListing returns the first of zones that lists ip (RFC 5782 2.1: an A
// record in 127.0.0.0/8 for the reversed address under the zone, e.g.
// 2.0.0.127.zone; IPv6 by nibbles, 2.4), or "". err is a lookup that failed
// temporarily when no zone listed the address. The zones are asked at once.
func dnsblListing(ctx context.Context, r IPResolver, zones []string, ip net.IP) (zone string, err error) {
	rev, rerr := dns.ReverseAddr(ip.String())
	if rerr != nil {
		return "", rerr
	}
	rev = strings.TrimSuffix(strings.TrimSuffix(rev, "in-addr.arpa."), "ip6.arpa.")
	listed := make([]bool, len(zones))
	errs := make([]error, len(zones))
	var wg sync.WaitGroup
	for i, z := range zones {
		wg.Go(func() {
			ips, err := r.LookupIP(ctx, "ip4", rev+strings.TrimSuffix(z, "."))
			var de *net.DNSError
			switch {
			case errors.As(err, &de) && de.IsNotFound:
			case err != nil:
				errs[i] = err
			}
			for _, a := range ips {
				// 127.255.255.0/24 is how some lists say "query refused"
				// (e.g. through a public resolver): not a listing.
				if a4 := a.To4(); a4 != nil && a4[0] == 127 && !(a4[1] == 255 && a4[2] == 255) {
					listed[i] = true
				}
			}
		})
	}
	wg.Wait()
	for i, z := range zones {
		if listed[i] {
			return z, nil
		}
	}
	return "", errors.Join(errs...)
}
