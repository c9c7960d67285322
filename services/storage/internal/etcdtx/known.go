package etcdtx

import (
	"sync"
	"time"
)

// Known keeps the values and revisions of keys that one writer reads over
// and over (an account's mailbox, quota and account records, read by every
// change of the account that a storage replica commits), as its own last
// successful commit left them. RunKnown's first attempt answers reads from
// it instead of asking etcd; its commit compares their revisions as for any
// read. The zero value is ready; a nil *Known keeps nothing.
type Known struct {
	mu    sync.Mutex
	reads map[string]read
	// coldUntil: after a stale answer (another writer changed a key), reads
	// go to etcd for a while, so that a key changed often elsewhere costs
	// no failed commit per change.
	coldUntil time.Time
}

// maxKnownKeys bounds what a Known keeps: a commit that read more (a bulk
// change) teaches it nothing.
const maxKnownKeys = 32

// knownColdFor is how long a Known stays unused after a stale answer.
const knownColdFor = time.Second

// snapshot returns the reads to answer from (nil: none).
func (k *Known) snapshot() map[string]read {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.reads) == 0 || time.Now().Before(k.coldUntil) {
		return nil
	}
	return k.reads // replaced, never changed, by learn and forget
}

// learn keeps what tx read, as its commit at rev left it.
func (k *Known) learn(tx *Tx, rev int64) {
	if k == nil {
		return
	}
	reads := make(map[string]read, len(tx.reads))
	for key, r := range tx.reads {
		if r.assumed {
			continue
		}
		if w, written := tx.writes[key]; written {
			if len(w.opts) > 0 {
				continue // an option (a lease, say) may change what is stored
			}
			r = read{}
			if !w.delete {
				r.value, r.modRev = append([]byte{}, w.value...), rev
			}
		}
		r.known = true
		reads[key] = r
	}
	if len(reads) > maxKnownKeys {
		reads = nil
	}
	k.mu.Lock()
	k.reads = reads
	k.mu.Unlock()
}

// forget drops every value; stale also pauses the Known for a while.
func (k *Known) forget(stale bool) {
	if k == nil {
		return
	}
	k.mu.Lock()
	k.reads = nil
	if stale {
		k.coldUntil = time.Now().Add(knownColdFor)
	}
	k.mu.Unlock()
}

// usedKnown reports whether a read of this attempt came from a Known.
func (t *Tx) usedKnown() bool {
	for _, r := range t.reads {
		if r.known {
			return true
		}
	}
	return t.droppedKnown
}
