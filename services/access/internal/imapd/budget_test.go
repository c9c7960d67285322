package imapd

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Concurrent takers never hold more than the budget together; a share
// larger than the budget runs alone; a waiter gives up with its context.
func TestMemoryBudget(t *testing.T) {
	b := newMemoryBudget(100)
	var held, peak atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := b.acquire(context.Background(), int64(30+i%3*40)) // 30, 70, 110 (cut to 100)
			if err != nil {
				t.Error(err)
				return
			}
			now := held.Add(n)
			for {
				p := peak.Load()
				if now <= p || peak.CompareAndSwap(p, now) {
					break
				}
			}
			time.Sleep(2 * time.Millisecond)
			held.Add(-n)
			b.release(n)
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 100 || p == 0 {
		t.Fatalf("peak held %d, want 1..100", p)
	}
	if b.free != 100 {
		t.Fatalf("%d free after every release, want 100", b.free)
	}
	n, _ := b.acquire(context.Background(), 100)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := b.acquire(ctx, 1); err == nil {
		t.Fatal("acquired past a spent budget")
	}
	b.release(n)
}
