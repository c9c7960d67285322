package service

import (
	"fmt"
	"testing"
	"time"
)

// An answer read from etcd before a directory change and stored after it
// must not stay; nothing is kept while the watch is down; a change drops the
// whole domain (a catch-all serves every local part).
func TestRecipientCacheKeepsNoStaleAnswer(t *testing.T) {
	now := time.Now()
	c := newRecipientCache(time.Minute, 8)
	alice := addressLookup{domainKnown: true, routes: []route{{account: "a1", address: "alice@example.test"}}}

	_, _, gen := c.get("alice", "example.test", now)
	c.put("alice", "example.test", alice, gen, now)
	if _, ok, _ := c.get("alice", "example.test", now); ok {
		t.Fatal("an answer was kept while the watch was not running")
	}

	c.setLive(true)
	_, _, gen = c.get("alice", "example.test", now)
	c.forgetDomain("example.test") // the directory changed while etcd was read
	c.put("alice", "example.test", alice, gen, now)
	if _, ok, _ := c.get("alice", "example.test", now); ok {
		t.Fatal("an answer read before a change was kept after it")
	}

	_, _, gen = c.get("alice", "example.test", now)
	c.put("alice", "example.test", alice, gen, now)
	_, _, gen = c.get("bob", "example.test", now)
	c.put("bob", "example.test", addressLookup{domainKnown: true}, gen, now)
	_, _, gen = c.get("x", "other.test", now)
	c.put("x", "other.test", addressLookup{}, gen, now)
	if l, ok, _ := c.get("alice", "example.test", now); !ok || l.routes[0].account != "a1" {
		t.Fatalf("alice: %v %v", l, ok)
	}
	if _, ok, _ := c.get("alice", "example.test", now.Add(2*time.Minute)); ok {
		t.Fatal("an answer outlived its TTL")
	}
	c.forgetDomain("example.test")
	if _, ok, _ := c.get("bob", "example.test", now); ok {
		t.Fatal("a change in the domain left another address's answer")
	}
	if _, ok, _ := c.get("x", "other.test", now); !ok {
		t.Fatal("a change in one domain dropped another domain's answers")
	}

	// Full: the cache starts over rather than growing.
	for _, l := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		_, _, gen = c.get(l, "big.test", now)
		c.put(l, "big.test", addressLookup{domainKnown: true, routes: []route{{account: l, address: l + "@big.test"}}}, gen, now)
	}
	if c.size > c.max {
		t.Fatalf("%d entries kept, bound %d", c.size, c.max)
	}
	hits, misses := c.hits.Load(), c.misses.Load()
	if hits == 0 || misses == 0 {
		t.Fatalf("hits %d, misses %d", hits, misses)
	}

	c.setLive(false)
	if _, ok, _ := c.get("d", "big.test", now); ok {
		t.Fatal("answers survived the watch stopping")
	}
}

// A flood of RCPTs to addresses that do not exist (a dictionary attack)
// does not push real recipients out: answers that route nowhere take at
// most half of the cache, and the rest go to etcd each time.
func TestRecipientCacheKeepsRealRecipientsThroughAFlood(t *testing.T) {
	now := time.Now()
	c := newRecipientCache(time.Minute, 100)
	c.setLive(true)
	put := func(local string, l addressLookup) {
		_, _, gen := c.get(local, "example.test", now)
		c.put(local, "example.test", l, gen, now)
	}
	for i := range 40 {
		put(fmt.Sprintf("user%d", i), addressLookup{domainKnown: true, routes: []route{{account: fmt.Sprint(i), address: fmt.Sprintf("user%d@example.test", i)}}})
	}
	for i := range 10000 {
		put(fmt.Sprintf("random%d", i), addressLookup{domainKnown: true})
	}
	for i := range 40 {
		if l, ok, _ := c.get(fmt.Sprintf("user%d", i), "example.test", now); !ok || l.routes[0].account != fmt.Sprint(i) {
			t.Fatalf("user%d was dropped by the flood", i)
		}
	}
	if c.negatives != c.max/2 || c.size != 40+c.max/2 {
		t.Fatalf("%d answers kept, %d of them negative; want 40 real ones and %d negative", c.size, c.negatives, c.max/2)
	}
	// A kept negative answer can turn positive (the address was made) and
	// back; the counts follow.
	put("random0", addressLookup{domainKnown: true, routes: []route{{account: "n", address: "random0@example.test"}}})
	put("user0", addressLookup{domainKnown: true})
	if c.negatives != c.max/2 || c.size != 40+c.max/2 {
		t.Fatalf("after two answers changed: %d kept, %d negative", c.size, c.negatives)
	}
	// Once the flood's answers expire, new negative answers are kept again.
	later := now.Add(2 * time.Minute)
	_, _, gen := c.get("late", "example.test", later)
	c.put("late", "example.test", addressLookup{domainKnown: true}, gen, later)
	if _, ok, _ := c.get("late", "example.test", later); !ok || c.negatives != 1 {
		t.Fatalf("a negative answer after the flood expired: kept %v, %d negative counted", ok, c.negatives)
	}
	c.forgetDomain("example.test")
	if c.size != 0 || c.negatives != 0 {
		t.Fatalf("after the domain changed: %d kept, %d negative", c.size, c.negatives)
	}
}
