// Package authlimit slows down and locks out password guessing, per client
// address and per username from that address, as Dovecot's auth penalty
// does: guessing from one address locks out that address (and that user
// from it), never the user everywhere else. State is per pod: with N pods an
// attacker gets at most N times the budget (the storage tier's cluster-wide
// count, keyed the same way, bounds that).
package authlimit

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Limiter counts recent failures.
type Limiter struct {
	// MaxFailures within Window lock the IP or username out for Lockout.
	MaxFailures int
	Window      time.Duration
	Lockout     time.Duration
	// Delay is slept after each failure (doubling with each one, up to 8×).
	Delay time.Duration

	mu      sync.Mutex
	entries map[string]*entry
	now     func() time.Time
}

type entry struct {
	failures    int
	first       time.Time
	lockedUntil time.Time
}

// New returns a limiter with the given policy.
func New(maxFailures int, window, lockout, delay time.Duration) *Limiter {
	return &Limiter{MaxFailures: maxFailures, Window: window, Lockout: lockout, Delay: delay,
		entries: map[string]*entry{}, now: time.Now}
}

func keys(ip, user string) []string {
	client := ClientKey(ip)
	k := []string{"ip:" + client}
	if user != "" {
		k = append(k, userKey(client, user))
	}
	return k
}

func userKey(client, user string) string {
	return "user:" + CanonicalUsername(user) + "|" + client
}

// CanonicalUsername spells a username one way for counting: without
// surrounding space, in lower case, without a trailing dot on its domain —
// so that "Carol@Example.test." and "carol@example.test" are one user.
func CanonicalUsername(user string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(user)), ".")
}

// ClientKey is what a client address counts as: an IPv6 address by its /64
// (one host usually holds a whole /64, and would otherwise get 2^64
// budgets), an IPv4 address (also as IPv4-mapped IPv6) by itself. Anything
// else counts as written, bounded in length.
func ClientKey(ip string) string {
	addr, err := netip.ParseAddr(strings.TrimSpace(ip))
	switch {
	case err != nil:
		return "other:" + ip[:min(len(ip), 64)]
	case addr.Is4() || addr.Is4In6():
		return addr.Unmap().String()
	default:
		prefix, _ := addr.Prefix(64)
		return strings.ReplaceAll(prefix.String(), "/", "_")
	}
}

// Locked reports whether ip or user is locked out now.
func (l *Limiter) Locked(ip, user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range keys(ip, user) {
		if e := l.entries[k]; e != nil && now.Before(e.lockedUntil) {
			return true
		}
	}
	return false
}

// Failed records a failure and returns how long to wait before answering.
func (l *Limiter) Failed(ip, user string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	worst := 0
	for _, k := range keys(ip, user) {
		e := l.entries[k]
		if e == nil || now.Sub(e.first) > l.Window {
			e = &entry{first: now}
			l.entries[k] = e
		}
		e.failures++
		if e.failures >= l.MaxFailures {
			e.lockedUntil = now.Add(l.Lockout)
		}
		worst = max(worst, e.failures)
	}
	l.gc(now)
	return l.Delay * time.Duration(min(1<<(worst-1), 8))
}

// Succeeded forgets the username's failures from this address (not the
// address's own).
func (l *Limiter) Succeeded(ip, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.entries, userKey(ClientKey(ip), user))
}

// gc drops stale entries so the map cannot grow without bound.
func (l *Limiter) gc(now time.Time) {
	if len(l.entries) < 10000 {
		return
	}
	for k, e := range l.entries {
		if now.Sub(e.first) > l.Window && now.After(e.lockedUntil) {
			delete(l.entries, k)
		}
	}
}
