package e2e

import (
	"context"
	"net"
	"time"
)

// netResolver looks TXT records up on the test DNS server.
type netResolver struct{ addr string }

func (r *netResolver) txt(name string) ([]string, error) {
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, r.addr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return res.LookupTXT(ctx, name)
}
