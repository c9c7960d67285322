package password

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCacheRemembersSuccessOnly(t *testing.T) {
	ctx := context.Background()
	verify := func(c *Cache, account, hash, pw string) bool {
		t.Helper()
		ok, err := c.Verify(ctx, account, hash, pw)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	h, _ := Hash("s3cret")
	c := NewCache(time.Minute, 10)
	if verify(c, "acc", h, "wrong") {
		t.Fatal("wrong password accepted")
	}
	if !verify(c, "acc", h, "s3cret") {
		t.Fatal("right password refused")
	}
	if len(c.entries) != 1 {
		t.Fatalf("%d entries, want 1 (failures are not cached)", len(c.entries))
	}
	// A cached success takes no slot: with every slot taken it still answers.
	for range cap(c.slots) {
		c.slots <- struct{}{}
	}
	if !verify(c, "acc", h, "s3cret") {
		t.Fatal("a cached success was not served from the cache")
	}
	for range cap(c.slots) {
		<-c.slots
	}
	// A new hash (password changed) misses the cache, and the old password fails.
	h2, _ := Hash("other")
	if verify(c, "acc", h2, "s3cret") {
		t.Fatal("old password accepted after a change")
	}
	if verify(c, "acc2", h, "wrong") {
		t.Fatal("another account's cache entry leaked")
	}
	if verify(c, "acc", "", "s3cret") {
		t.Fatal("an unknown account (empty hash) was accepted")
	}
	expired := NewCache(time.Nanosecond, 10)
	verify(expired, "acc", h, "s3cret")
	time.Sleep(time.Millisecond)
	if verify(expired, "acc", h, "wrong") {
		t.Fatal("wrong password accepted after expiry")
	}
	off := NewCache(0, 10)
	if !verify(off, "acc", h, "s3cret") || len(off.entries) != 0 {
		t.Fatal("a cache with TTL 0 must check every time and keep nothing")
	}
}

// A reconnect storm: many logins of one account at once share one hash
// check, and never more checks run at once than there are slots.
func TestCacheSharesChecksAndBoundsThem(t *testing.T) {
	h, _ := Hash("s3cret")
	c := NewCache(0, 10) // no caching: only sharing can save work
	checks.Store(0)
	var running, peak atomic.Int32
	c.slots = make(chan struct{}, 2)
	hold := make(chan struct{})
	verifyHook = func() {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-hold
		running.Add(-1)
	}
	defer func() { verifyHook = nil }()

	var wg sync.WaitGroup
	results := make(chan bool, 60)
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Six distinct checks, each asked by ten callers.
			ok, err := c.Verify(context.Background(), "acc", h, []string{"s3cret", "a", "b", "c", "d", "e"}[i%6])
			if err != nil {
				t.Error(err)
			}
			results <- ok
		}()
	}
	// Let every caller arrive; only two checks may be running.
	deadline := time.Now().Add(5 * time.Second)
	for running.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(hold)
	wg.Wait()
	close(results)
	accepted := 0
	for ok := range results {
		if ok {
			accepted++
		}
	}
	if accepted != 10 {
		t.Errorf("%d of 60 logins accepted, want the 10 with the right password", accepted)
	}
	if p := peak.Load(); p > 2 {
		t.Errorf("%d checks ran at once with 2 slots", p)
	}
	if n := checks.Load(); n > 6 {
		t.Errorf("%d hash computations for 6 distinct checks", n)
	}
}

// A caller whose context ends while waiting for a slot gets the context's
// error, not a wrong-password answer, and a caller sharing its check runs it
// afresh.
func TestCacheWaitEndsWithContext(t *testing.T) {
	h, _ := Hash("s3cret")
	c := NewCache(time.Minute, 10)
	c.slots = make(chan struct{}, 1)
	c.slots <- struct{}{} // the only slot is busy
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	patient := make(chan bool)
	go func() {
		time.Sleep(5 * time.Millisecond) // joins the impatient caller's check
		ok, err := c.Verify(context.Background(), "acc", h, "s3cret")
		if err != nil {
			t.Error(err)
		}
		patient <- ok
	}()
	if ok, err := c.Verify(ctx, "acc", h, "s3cret"); ok || err != context.DeadlineExceeded {
		t.Fatalf("Verify = %v, %v; want false, DeadlineExceeded", ok, err)
	}
	<-c.slots // the slot frees up
	if !<-patient {
		t.Fatal("the caller that shared an abandoned check was refused")
	}
}
