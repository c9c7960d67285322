package password

import (
	"testing"
	"time"
)

func TestCacheRemembersSuccessOnly(t *testing.T) {
	h, _ := Hash("s3cret")
	c := NewCache(time.Minute, 10)
	if c.Verify("acc", h, "wrong") {
		t.Fatal("wrong password accepted")
	}
	if !c.Verify("acc", h, "s3cret") {
		t.Fatal("right password refused")
	}
	if len(c.entries) != 1 {
		t.Fatalf("%d entries, want 1 (failures are not cached)", len(c.entries))
	}
	start := time.Now()
	if !c.Verify("acc", h, "s3cret") || time.Since(start) > 5*time.Millisecond {
		t.Fatal("a cached success was not served from the cache")
	}
	// A new hash (password changed) misses the cache, and the old password fails.
	h2, _ := Hash("other")
	if c.Verify("acc", h2, "s3cret") {
		t.Fatal("old password accepted after a change")
	}
	if c.Verify("acc2", h, "wrong") {
		t.Fatal("another account's cache entry leaked")
	}
	expired := NewCache(time.Nanosecond, 10)
	expired.Verify("acc", h, "s3cret")
	time.Sleep(time.Millisecond)
	if expired.Verify("acc", h, "wrong") {
		t.Fatal("wrong password accepted after expiry")
	}
}
