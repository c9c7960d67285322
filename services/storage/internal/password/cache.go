package password

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"runtime"
	"sync"
	"time"
)

// Cache checks passwords for the storage tier's Authenticate. It does three
// things a reconnect storm (every client of a restarted pod logging in at
// once) and a password-guessing flood both need:
//
//   - It remembers recent successful verifications, as Dovecot's auth cache
//     does, so that a client reconnecting often does not pay argon2id each
//     time. Keys are an HMAC (with a random per-process key) of the account,
//     its current hash and the password: nothing reversible is kept, a
//     password change invalidates at once, and failures are never cached.
//   - Checks of the same account, hash and password that run at the same
//     time share one computation: 50 devices of one user logging in together
//     cost one argon2id, not 50.
//   - At most a few checks compute at once (each takes 19 MiB and a core for
//     ~30 ms); the others wait their turn, or give up when their context
//     ends. Memory stays bounded whatever the number of logins in flight.
type Cache struct {
	ttl   time.Duration
	max   int
	key   []byte
	slots chan struct{}

	mu       sync.Mutex
	entries  map[[32]byte]time.Time
	inFlight map[[32]byte]*check
}

// check is one verification in progress; others asking the same wait on done.
type check struct {
	done chan struct{}
	ran  bool // false if its starter's context ended first
	ok   bool
}

// NewCache returns a cache keeping successes for ttl (0: none are kept), at
// most max entries, computing at most 2×GOMAXPROCS hashes at once.
func NewCache(ttl time.Duration, max int) *Cache {
	k := make([]byte, 32)
	rand.Read(k)
	return &Cache{ttl: ttl, max: max, key: k, slots: make(chan struct{}, 2*runtime.GOMAXPROCS(0)),
		entries: map[[32]byte]time.Time{}, inFlight: map[[32]byte]*check{}}
}

func (c *Cache) sum(account, hash, password string) [32]byte {
	m := hmac.New(sha256.New, c.key)
	for _, s := range []string{account, hash, password} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// Verify is password.Verify with the cache in front. An empty hash (unknown
// account) spends the time of a real check and fails. The error is ctx's when
// it ends before the check could run.
func (c *Cache) Verify(ctx context.Context, account, hash, password string) (bool, error) {
	if hash == "" {
		// An unknown account pays a whole check of its own: shared with
		// others of the same password, it would answer sooner than a real
		// account does, and tell a password spray which names exist.
		select {
		case c.slots <- struct{}{}:
			Verify("", password)
			<-c.slots
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	k := c.sum(account, hash, password)
	for {
		c.mu.Lock()
		if exp, ok := c.entries[k]; ok && time.Now().Before(exp) {
			c.mu.Unlock()
			return true, nil
		}
		ch, waiting := c.inFlight[k]
		if !waiting {
			ch = &check{done: make(chan struct{})}
			c.inFlight[k] = ch
		}
		c.mu.Unlock()
		if !waiting {
			return c.run(ctx, k, ch, hash, password)
		}
		select {
		case <-ch.done:
			if ch.ran {
				return ch.ok, nil
			}
			// Its starter gave up before it ran: check again.
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// run computes the check ch that this caller started, once a slot is free.
func (c *Cache) run(ctx context.Context, k [32]byte, ch *check, hash, password string) (bool, error) {
	select {
	case c.slots <- struct{}{}:
		ch.ok, ch.ran = Verify(hash, password), true
		<-c.slots
	case <-ctx.Done():
	}
	c.mu.Lock()
	delete(c.inFlight, k)
	if ch.ok && c.ttl > 0 {
		c.remember(k, time.Now())
	}
	c.mu.Unlock()
	close(ch.done)
	if !ch.ran {
		return false, ctx.Err()
	}
	return ch.ok, nil
}

// remember keeps k as a success until now+ttl, making room if the cache is
// full (expired entries first, then any). Called with c.mu held.
func (c *Cache) remember(k [32]byte, now time.Time) {
	if len(c.entries) >= c.max {
		for key, e := range c.entries {
			if now.After(e) || len(c.entries) >= c.max {
				delete(c.entries, key)
			}
		}
	}
	c.entries[k] = now.Add(c.ttl)
}
