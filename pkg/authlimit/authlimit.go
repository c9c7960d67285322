// Package authlimit slows down and locks out password guessing, per client IP
// and per username, as Dovecot's auth penalty and fail2ban-style lockouts do.
// State is per pod: with N pods an attacker gets at most N times the budget.
package authlimit

import (
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
	k := []string{"ip:" + ip}
	if user != "" {
		k = append(k, "user:"+strings.ToLower(user))
	}
	return k
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

// Succeeded forgets the username's failures (not the IP's).
func (l *Limiter) Succeeded(ip, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.entries, "user:"+strings.ToLower(user))
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
