// Package connlimit bounds concurrent connections per client address on a
// listener, as every Mailfleet frontend does, and in total per process, and
// optionally the rate of new ones.
package connlimit

import (
	"net"
	"sync"
	"time"

	"github.com/mailfleet/mailfleet/pkg/ratelimit"
)

// Limit counts open connections per address; one Limit can cover several
// listeners (a server's plain and TLS ports).
type Limit struct {
	max   int
	mu    sync.Mutex
	perIP map[string]int
	// MaxTotal bounds the connections of all addresses together (0: no
	// bound): many addresses at once must not exhaust the pod either.
	MaxTotal int
	total    int
}

// New returns a limit of max connections per address.
func New(max int) *Limit { return &Limit{max: max, perIP: map[string]int{}} }

// Open is the number of connections the limit counts now.
func (l *Limit) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Listener accepts connections until an address has reached the limit;
// beyond that it writes Refusal (a protocol greeting that says "later"),
// closes, and calls OnRefuse (for metrics) if set.
type Listener struct {
	net.Listener
	Refusal string
	// BusyRefusal is written instead when the total is reached (Refusal
	// if empty).
	BusyRefusal string
	OnRefuse    func()
	OnAccept    func()
	l           *Limit

	// Rate, if set, also bounds new connections per address and minute:
	// beyond it RateRefusal is written and OnRateRefuse called.
	Rate         *ratelimit.Limiter
	RateRefusal  string
	OnRateRefuse func()
}

// Wrap returns a listener around ln that counts against the limit.
func (l *Limit) Wrap(ln net.Listener, refusal string) *Listener {
	return &Listener{Listener: ln, Refusal: refusal, l: l}
}

// Wrap returns a limiting listener around ln with a limit of its own.
func Wrap(ln net.Listener, max int, refusal string) *Listener {
	return New(max).Wrap(ln, refusal)
}

// IP returns the address part of c's remote address.
func IP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.OnAccept != nil {
			l.OnAccept()
		}
		ip := IP(c)
		if !l.Rate.Allow(ip) {
			refuse(c, l.RateRefusal, l.OnRateRefuse)
			continue
		}
		lim := l.l
		lim.mu.Lock()
		busy := lim.MaxTotal > 0 && lim.total >= lim.MaxTotal
		over := lim.perIP[ip] >= lim.max
		if !over && !busy {
			lim.perIP[ip]++
			lim.total++
		}
		lim.mu.Unlock()
		if busy {
			refusal := l.BusyRefusal
			if refusal == "" {
				refusal = l.Refusal
			}
			refuse(c, refusal, l.OnRefuse)
			continue
		}
		if over {
			refuse(c, l.Refusal, l.OnRefuse)
			continue
		}
		return &conn{Conn: c, l: lim, ip: ip}, nil
	}
}

// refuse tells a client why it is turned away (if there is a refusal
// text), closes the connection and reports it.
func refuse(c net.Conn, refusal string, report func()) {
	if report != nil {
		report()
	}
	if refusal != "" {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(refusal))
	}
	c.Close()
}

type conn struct {
	net.Conn
	l    *Limit
	ip   string
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.perIP[c.ip]--; c.l.perIP[c.ip] <= 0 {
			delete(c.l.perIP, c.ip)
		}
		c.l.total--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
