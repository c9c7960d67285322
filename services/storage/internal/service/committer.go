package service

import (
	"context"
	"errors"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
)

// committer batches concurrent changes of one account into one etcd
// transaction (group commit). Changes of the same account would conflict on
// the mailbox and quota records anyway; running them together in this replica
// turns N conflicting transactions into one. Replicas still race each other;
// etcdtx retries those conflicts.
type committer struct {
	etcd *clientv3.Client

	mu       sync.Mutex
	accounts map[string]*accountQueue
	// known keeps, per account, what this replica's last commit for it
	// read and wrote (mailbox, quota and account records), so that the
	// next batch's first attempt commits in one round trip instead of
	// reading them again (etcdtx.RunKnown; a stale value costs a retry).
	known map[string]*etcdtx.Known
}

// maxKnownAccounts bounds committer.known; beyond it, it starts over.
const maxKnownAccounts = 10000

type accountQueue struct {
	pending []*change
}

// change is one caller's step. fn may run several times (after conflicts);
// the run that committed is the one whose results count.
type change struct {
	ctx  context.Context
	fn   func(tx *etcdtx.Tx) error
	done chan struct{}
	rev  int64
	err  error
}

// maxBatch bounds the changes committed together.
const maxBatch = 64

// commitTimeout bounds one batch's commit, retries included.
const commitTimeout = 30 * time.Second

// errDeferred marks a change left for the next batch (the transaction is full).
var errDeferred = errors.New("deferred to the next batch")

func newCommitter(etcd *clientv3.Client) *committer {
	return &committer{etcd: etcd, accounts: map[string]*accountQueue{}, known: map[string]*etcdtx.Known{}}
}

// do runs fn for account in a transaction, possibly together with other
// changes of the same account, and returns the commit revision.
func (c *committer) do(ctx context.Context, account string, fn func(tx *etcdtx.Tx) error) (int64, error) {
	ch := &change{ctx: ctx, fn: fn, done: make(chan struct{})}
	c.mu.Lock()
	q, running := c.accounts[account]
	if !running {
		q = &accountQueue{}
		c.accounts[account] = q
	}
	q.pending = append(q.pending, ch)
	c.mu.Unlock()
	if !running {
		// A goroutine of its own leads, committing batches until the queue
		// is empty. Not this caller: under a steady stream of changes the
		// queue never empties, and a leading caller would never return,
		// its own change long committed (its client would time out and
		// retry a delivery that happened).
		go c.lead(account, q)
	}
	<-ch.done
	return ch.rev, ch.err
}

func (c *committer) lead(account string, q *accountQueue) {
	for {
		c.mu.Lock()
		if len(q.pending) == 0 {
			delete(c.accounts, account)
			c.mu.Unlock()
			return
		}
		batch := q.pending[:min(len(q.pending), maxBatch)]
		q.pending = q.pending[len(batch):]
		c.mu.Unlock()

		left := c.commit(c.knownOf(account), batch)
		if len(left) > 0 {
			c.mu.Lock()
			q.pending = append(left, q.pending...)
			c.mu.Unlock()
		}
	}
}

// knownOf returns account's Known (made on first use).
func (c *committer) knownOf(account string) *etcdtx.Known {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.known[account]
	if !ok {
		if len(c.known) >= maxKnownAccounts {
			c.known = map[string]*etcdtx.Known{}
		}
		k = &etcdtx.Known{}
		c.known[account] = k
	}
	return k
}

// commit runs one batch and finishes every change in it except those that did
// not fit, which it returns.
func (c *committer) commit(known *etcdtx.Known, batch []*change) (left []*change) {
	// A change whose caller gave up is dropped before it is staged. Once
	// staged, the batch commits on its own deadline: one caller going away
	// must not fail the others.
	var live []*change
	for _, ch := range batch {
		if err := ch.ctx.Err(); err != nil {
			ch.err = err
			close(ch.done)
			continue
		}
		live = append(live, ch)
	}
	if len(live) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	rev, err := etcdtx.RunKnown(ctx, c.etcd, known, func(tx *etcdtx.Tx) error {
		left = left[:0]
		for i, ch := range live {
			ch.err = nil
			sp := tx.Savepoint()
			err := ch.fn(tx)
			if err == nil && !tx.Fits() {
				err = errDeferred
			}
			if err != nil {
				tx.Rollback(sp)
				if err == errDeferred {
					if i == 0 {
						// Too big even alone: the caller must split it.
						ch.err = fail(reasonTooMany, "the change touches too many keys for one transaction")
						continue
					}
					left = append(left, ch)
					continue
				}
				ch.err = err
			}
		}
		return nil
	})
	deferred := map[*change]bool{}
	for _, ch := range left {
		deferred[ch] = true
	}
	for _, ch := range live {
		if deferred[ch] {
			continue
		}
		if err != nil && (ch.err == nil || etcdtx.IsUncertain(err)) {
			// With the commit's outcome unknown, a change's own refusal
			// may rest on a remembered record (etcdtx.Known) that no
			// commit checked: it gets the uncertain error too, and its
			// caller retries. (Its own writes were rolled back.)
			ch.err = err
		}
		if ch.err == nil {
			ch.rev = rev
		}
		close(ch.done)
	}
	return left
}
