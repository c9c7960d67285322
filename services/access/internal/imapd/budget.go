package imapd

import (
	"context"
	"sync"
)

// memoryBudget bounds the memory that SEARCH BODY and TEXT may hold across
// a pod's sessions: each search of a message takes a share sized from the
// message before it reads it, and waits while the pod's budget is spent.
// Sixteen clients searching one 50 MB message then take turns instead of
// holding gigabytes at once. A share larger than the whole budget is cut to
// it, so that a message larger than the budget is still searched (alone).
type memoryBudget struct {
	mu       sync.Mutex
	capacity int64
	free     int64
	released chan struct{} // closed and replaced on every release
}

func newMemoryBudget(capacity int64) *memoryBudget {
	return &memoryBudget{capacity: capacity, free: capacity, released: make(chan struct{})}
}

// acquire takes n bytes (at most the capacity) of the budget, waiting for
// them; it returns what it took, to be given back with release.
func (b *memoryBudget) acquire(ctx context.Context, n int64) (int64, error) {
	n = min(n, b.capacity)
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return n, nil
		}
		released := b.released
		b.mu.Unlock()
		select {
		case <-released:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (b *memoryBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free += n
	close(b.released)
	b.released = make(chan struct{})
}
