package password

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// Cache remembers recent successful verifications, as Dovecot's auth cache
// does, so that a client reconnecting often does not pay argon2id each time.
// Keys are an HMAC (with a random per-process key) of the account, its
// current hash and the password: nothing reversible is kept, a password
// change invalidates at once, and failures are never cached.
type Cache struct {
	ttl time.Duration
	max int
	key []byte

	mu      sync.Mutex
	entries map[[32]byte]time.Time
}

// NewCache returns a cache keeping successes for ttl, at most max entries.
func NewCache(ttl time.Duration, max int) *Cache {
	k := make([]byte, 32)
	rand.Read(k)
	return &Cache{ttl: ttl, max: max, key: k, entries: map[[32]byte]time.Time{}}
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

// Verify is password.Verify with the cache in front.
func (c *Cache) Verify(account, hash, password string) bool {
	if c == nil || c.ttl <= 0 || hash == "" {
		return Verify(hash, password)
	}
	k := c.sum(account, hash, password)
	now := time.Now()
	c.mu.Lock()
	exp, ok := c.entries[k]
	c.mu.Unlock()
	if ok && now.Before(exp) {
		return true
	}
	if !Verify(hash, password) {
		return false
	}
	c.mu.Lock()
	if len(c.entries) >= c.max {
		for key, e := range c.entries {
			if now.After(e) || len(c.entries) >= c.max {
				delete(c.entries, key)
			}
		}
	}
	c.entries[k] = now.Add(c.ttl)
	c.mu.Unlock()
	return true
}
