// Package etcdtx runs optimistic read-modify-write transactions on etcd.
//
// A transaction function reads keys through a Tx (each read remembers the key's
// ModRevision) and stages writes. Run commits the writes only if none of the
// read keys changed in the meantime, and runs the function again on conflict.
// This is how UIDNEXT, HIGHESTMODSEQ, usage counters and reference counts change
// together with the entries they describe, from any number of storage replicas.
package etcdtx

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxOps is how many compares or writes one transaction may hold. etcd's
// default --max-txn-ops is 128; we stay below it with room for bookkeeping.
const MaxOps = 120

// MaxBytes is how many bytes of keys and values one transaction may carry.
// etcd refuses requests over --max-request-bytes (1.5 MiB by default); a
// third of headroom covers the request's framing and compares' revisions.
const MaxBytes = 1 << 20

// opOverhead is what one compare or write costs on the wire besides its key
// and value (revisions, operation tags, lengths), rounded up.
const opOverhead = 16

// ErrTooLarge is returned by Run for a transaction over MaxOps or MaxBytes:
// the caller must split its change.
var ErrTooLarge = errors.New("transaction over etcd's limits")

// UncertainError wraps a failure of the commit itself (timeout, lost
// connection): the transaction may or may not have been applied. Whoever
// uploaded a body for it must not delete the body; the sweeper decides later.
type UncertainError struct{ Err error }

func (e *UncertainError) Error() string { return "etcd commit outcome unknown: " + e.Err.Error() }
func (e *UncertainError) Unwrap() error { return e.Err }

type read struct {
	value  []byte // nil when the key is absent
	modRev int64  // 0 when the key is absent
	// assumed: not read, only required to exist at commit (Assume).
	assumed bool
	// known: answered from a Known, not read now.
	known bool
}

type write struct {
	value  []byte
	delete bool
	opts   []clientv3.OpOption
}

// Tx collects the reads and writes of one attempt.
type Tx struct {
	ctx    context.Context
	kv     clientv3.KV
	reads  map[string]read
	writes map[string]write
	order  []string // write order, for readable transactions
	bytes  int      // keys and values of reads (compares) and writes so far
	// retry: an earlier attempt did not commit, so Assume reads.
	retry bool
	// known answers reads on a first attempt (RunKnown); droppedKnown: a
	// Rollback dropped a read it answered.
	known        map[string]read
	droppedKnown bool
}

// Get returns the value of key as this transaction sees it (its own staged
// writes first). ok is false when the key does not exist.
func (t *Tx) Get(key string) (value []byte, ok bool, err error) {
	if w, staged := t.writes[key]; staged {
		return w.value, !w.delete, nil
	}
	if r, seen := t.reads[key]; seen && !r.assumed {
		return r.value, r.value != nil, nil
	}
	if r, ok := t.known[key]; ok {
		t.addRead(key, r)
		return r.value, r.value != nil, nil
	}
	resp, err := t.kv.Get(t.ctx, key)
	if err != nil {
		return nil, false, err
	}
	r := read{}
	if len(resp.Kvs) == 1 {
		r.value, r.modRev = resp.Kvs[0].Value, resp.Kvs[0].ModRevision
		if r.value == nil {
			r.value = []byte{}
		}
	}
	t.addRead(key, r)
	return r.value, r.value != nil, nil
}

// Assume is Get's answer for a key that almost always exists, without a
// round trip: it says the key exists, and the commit requires it to. If the
// commit then fails (that key is gone, or any other compare failed), Run
// calls fn again and this time Assume reads the key.
func (t *Tx) Assume(key string) (ok bool, err error) {
	_, staged := t.writes[key]
	r, seen := t.reads[key]
	switch {
	case seen && r.assumed:
		return true, nil
	case t.retry || staged || seen: // Get answers from what it knows, or reads
	default:
		t.addRead(key, read{assumed: true})
		return true, nil
	}
	_, ok, err = t.Get(key)
	return ok, err
}

// addRead remembers a read (compared at commit) and counts its bytes.
func (t *Tx) addRead(key string, r read) {
	if _, again := t.reads[key]; !again { // an assumed key read after all
		t.bytes += len(key) + opOverhead
	}
	t.reads[key] = r
}

// Put stages a write of key.
func (t *Tx) Put(key string, value []byte, opts ...clientv3.OpOption) {
	t.stage(key, write{value: value, opts: opts})
}

func (t *Tx) stage(key string, w write) {
	if old, staged := t.writes[key]; staged {
		t.bytes -= len(old.value)
	} else {
		t.order = append(t.order, key)
		t.bytes += len(key) + opOverhead
	}
	t.bytes += len(w.value)
	t.writes[key] = w
}

// Delete stages a delete of key.
func (t *Tx) Delete(key string) {
	t.stage(key, write{delete: true})
}

// Size is the larger of the number of compares and of writes so far: keep it
// at most MaxOps.
func (t *Tx) Size() int { return max(len(t.reads), len(t.writes)) }

// Bytes is what the keys and values of the compares and writes so far weigh
// in the request: keep it at most MaxBytes.
func (t *Tx) Bytes() int { return t.bytes }

// Fits reports whether the transaction is within both limits.
func (t *Tx) Fits() bool { return t.Size() <= MaxOps && t.bytes <= MaxBytes }

// Room is what is left of both budgets: operations and bytes.
func (t *Tx) Room() (ops, bytes int) { return MaxOps - t.Size(), MaxBytes - t.bytes }

// Savepoint is the state of the reads and staged writes at one moment.
type Savepoint struct {
	reads  map[string]read
	writes map[string]write
	order  int
	bytes  int
}

// Savepoint records the reads and staged writes so that Rollback can undo
// what a failed step did after it. The reads go too: a rolled-back step's
// compares would only use up the transaction's budget.
func (t *Tx) Savepoint() Savepoint {
	return Savepoint{reads: maps.Clone(t.reads), writes: maps.Clone(t.writes), order: len(t.order), bytes: t.bytes}
}

// Rollback drops every read and write made after sp.
func (t *Tx) Rollback(sp Savepoint) {
	for key, r := range t.reads {
		if _, kept := sp.reads[key]; !kept && r.known {
			// What the step decided (it failed) rests on a value the
			// commit will not check: RunKnown tries again with reads.
			t.droppedKnown = true
		}
	}
	t.reads = sp.reads
	t.writes = sp.writes
	t.order = t.order[:sp.order]
	t.bytes = sp.bytes
}

// Run calls fn and commits what it staged, conditioned on every key it read
// being unchanged; on conflict it calls fn again with fresh reads. An error from
// fn is returned as is and nothing is written. It returns the revision of the
// commit (0 when fn staged nothing).
func Run(ctx context.Context, kv clientv3.KV, fn func(tx *Tx) error) (int64, error) {
	return RunKnown(ctx, kv, nil, fn)
}

// RunKnown is Run whose first attempt reads from known what known holds
// (nil: nothing), instead of asking etcd, and whose successful commit
// leaves in known what it read and wrote. A value in known is only as old
// as this process's last commit of it; the commit compares its revision,
// so a stale one costs a retry, never a wrong write. What is not checked
// by a commit — fn failed, staged nothing, or a step that read from known
// was rolled back — is decided again with reads.
func RunKnown(ctx context.Context, kv clientv3.KV, known *Known, fn func(tx *Tx) error) (int64, error) {
	backoff := 2 * time.Millisecond
	useKnown := known.snapshot()
	for attempt := 0; ; attempt++ {
		tx := &Tx{ctx: ctx, kv: kv, reads: map[string]read{}, writes: map[string]write{}, retry: attempt > 0, known: useKnown}
		useKnown = nil // later attempts read
		err := fn(tx)
		if tx.usedKnown() && (err != nil || len(tx.writes) == 0 || tx.droppedKnown) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if len(tx.writes) == 0 {
			return 0, nil
		}
		if !tx.Fits() {
			// etcd would refuse it: say so plainly instead of leaving the
			// outcome uncertain.
			return 0, fmt.Errorf("%w: %d operations, %d bytes", ErrTooLarge, tx.Size(), tx.Bytes())
		}
		cmps := make([]clientv3.Cmp, 0, len(tx.reads))
		for key, r := range tx.reads {
			if r.assumed {
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), ">", 0))
				continue
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", r.modRev))
		}
		ops := make([]clientv3.Op, 0, len(tx.order))
		for _, key := range tx.order {
			w := tx.writes[key]
			if w.delete {
				ops = append(ops, clientv3.OpDelete(key))
			} else {
				ops = append(ops, clientv3.OpPut(key, string(w.value), w.opts...))
			}
		}
		resp, err := kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			known.forget(false)
			return 0, &UncertainError{Err: err}
		}
		if resp.Succeeded {
			known.learn(tx, resp.Header.Revision)
			return resp.Header.Revision, nil
		}
		if tx.usedKnown() {
			// Someone else changed what this process knew: read, at once.
			known.forget(true)
			continue
		}
		// Someone else changed a key we read: back off a little (with jitter,
		// so that competing replicas do not collide again) and redo.
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(backoff/2 + rand.N(backoff)):
		}
		backoff = min(backoff*2, 100*time.Millisecond)
	}
}

// IsUncertain reports whether err leaves the outcome of a commit unknown.
func IsUncertain(err error) bool {
	var u *UncertainError
	return errors.As(err, &u)
}

// Prefetch reads several keys in one round trip, as Get would one by one (each
// is compared at commit). Keys already read or staged are skipped.
func (t *Tx) Prefetch(keys []string) error {
	var ops []clientv3.Op
	var wanted []string
	for _, key := range keys {
		if _, staged := t.writes[key]; staged {
			continue
		}
		if _, seen := t.reads[key]; seen {
			continue
		}
		if r, ok := t.known[key]; ok {
			t.addRead(key, r)
			continue
		}
		ops = append(ops, clientv3.OpGet(key))
		wanted = append(wanted, key)
	}
	for len(ops) > 0 {
		n := min(len(ops), MaxOps)
		resp, err := t.kv.Txn(t.ctx).Then(ops[:n]...).Commit()
		if err != nil {
			return err
		}
		for i, r := range resp.Responses {
			rd := read{}
			if kvs := r.GetResponseRange().Kvs; len(kvs) == 1 {
				rd.value, rd.modRev = kvs[0].Value, kvs[0].ModRevision
				if rd.value == nil {
					rd.value = []byte{}
				}
			}
			t.addRead(wanted[i], rd)
		}
		ops, wanted = ops[n:], wanted[n:]
	}
	return nil
}

// KeyValue is one key and value returned by Range.
type KeyValue struct {
	Key   string
	Value []byte
}

// Range returns up to limit keys in [start, end) in key order, with this
// transaction's staged writes applied. The keys are NOT compared at commit:
// use it only for keys whose every change also changes a key this transaction
// did Get (as every message entry change puts its mailbox record).
func (t *Tx) Range(start, end string, limit int64) ([]KeyValue, error) {
	resp, err := t.kv.Get(t.ctx, start, clientv3.WithRange(end), clientv3.WithLimit(limit))
	if err != nil {
		return nil, err
	}
	merged := map[string][]byte{}
	for _, kv := range resp.Kvs {
		merged[string(kv.Key)] = kv.Value
	}
	last := end
	if resp.More && len(resp.Kvs) > 0 {
		// Staged keys beyond the last one read belong to the next page.
		last = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	for key, w := range t.writes {
		if key < start || key >= last {
			continue
		}
		if w.delete {
			delete(merged, key)
		} else {
			merged[key] = w.value
		}
	}
	out := make([]KeyValue, 0, len(merged))
	for k, v := range merged {
		out = append(out, KeyValue{Key: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Revision returns the ModRevision a read of key saw (0 if absent or not read).
func (t *Tx) Revision(key string) int64 { return t.reads[key].modRev }

// ReadCovered reads keys in one round trip, with this transaction's staged
// writes applied (nil for an absent key). Like Range, the keys are NOT
// compared at commit: use it only for keys whose every change also changes
// a key this transaction did Get.
func (t *Tx) ReadCovered(keys []string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	var ops []clientv3.Op
	var idx []int
	for i, key := range keys {
		if w, staged := t.writes[key]; staged {
			if !w.delete {
				out[i] = w.value
			}
			continue
		}
		ops = append(ops, clientv3.OpGet(key))
		idx = append(idx, i)
	}
	for len(ops) > 0 {
		n := min(len(ops), MaxOps)
		resp, err := t.kv.Txn(t.ctx).Then(ops[:n]...).Commit()
		if err != nil {
			return nil, err
		}
		for j, r := range resp.Responses {
			if kvs := r.GetResponseRange().Kvs; len(kvs) == 1 {
				out[idx[j]] = kvs[0].Value
			}
		}
		ops, idx = ops[n:], idx[n:]
	}
	return out, nil
}
