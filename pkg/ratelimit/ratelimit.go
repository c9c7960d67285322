// Package ratelimit bounds how often each client address may do something
// (open a connection, start a message): a token bucket per address that
// allows a minute's worth at once and refills at the per-minute rate, as
// Postfix's anvil limits do. Buckets of addresses that went quiet are
// dropped, so memory follows the active clients.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter is a per-key rate limit. A nil Limiter allows everything.
type Limiter struct {
	perMinute int
	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	lastSweep time.Time
}

// New returns a limit of perMinute events per key, or nil (no limit) for 0.
func New(perMinute int) *Limiter {
	if perMinute <= 0 {
		return nil
	}
	return &Limiter{perMinute: perMinute, buckets: map[string]*rate.Limiter{}, lastSweep: time.Now()}
}

// Allow reports whether key may do one more event now, and counts it.
func (l *Limiter) Allow(key string) bool {
	if l == nil {
		return true
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > time.Minute {
		l.sweep(now)
	}
	b, ok := l.buckets[key]
	if !ok {
		b = rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)
		l.buckets[key] = b
	}
	return b.AllowN(now, 1)
}

// sweep drops full buckets: a key idle that long starts afresh anyway.
func (l *Limiter) sweep(now time.Time) {
	for key, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.perMinute) {
			delete(l.buckets, key)
		}
	}
	l.lastSweep = now
}
