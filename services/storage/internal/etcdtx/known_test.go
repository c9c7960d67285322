package etcdtx_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
)

// countingKV counts the reads a transaction makes (Get, and Txn without
// compares: Prefetch).
type countingKV struct {
	clientv3.KV
	gets atomic.Int64
}

func (c *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	c.gets.Add(1)
	return c.KV.Get(ctx, key, opts...)
}

// A Known answers the reads of a writer's next transaction from its last
// commit, and nothing it answers is trusted unchecked: another writer's
// change makes the commit fail and the function run again with reads; a
// function that failed, or a step rolled back, on a known value is decided
// again with reads.
func TestKnownAnswersOnlyWhatTheCommitChecks(t *testing.T) {
	cli := newClient(t)
	kv := &countingKV{KV: cli}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	get := func(key string) int {
		t.Helper()
		resp, err := cli.Get(ctx, key)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("get %s: %v", key, err)
		}
		n, _ := strconv.Atoi(string(resp.Kvs[0].Value))
		return n
	}
	put := func(key string, n int) {
		t.Helper()
		if _, err := cli.Put(ctx, key, strconv.Itoa(n)); err != nil {
			t.Fatal(err)
		}
	}
	errFull := errors.New("full")
	known := &etcdtx.Known{}
	attempts := 0
	// incr adds one to n, refusing at limit (a quota).
	incr := func(limit int) error {
		t.Helper()
		attempts = 0
		_, err := etcdtx.RunKnown(ctx, kv, known, func(tx *etcdtx.Tx) error {
			attempts++
			tx.Put("touched", []byte("x")) // staged before the decision
			v, _, err := tx.Get("n")
			if err != nil {
				return err
			}
			n, _ := strconv.Atoi(string(v))
			if n >= limit {
				return errFull
			}
			tx.Put("n", []byte(strconv.Itoa(n+1)))
			return nil
		})
		return err
	}
	put("n", 0)
	reads := func() int64 { return kv.gets.Swap(0) }

	if err := incr(1000); err != nil || get("n") != 1 || reads() != 1 {
		t.Fatalf("first increment: %v, n = %d", err, get("n"))
	}
	if err := incr(1000); err != nil || get("n") != 2 || attempts != 1 {
		t.Fatalf("second increment: %v, n = %d, %d attempts", err, get("n"), attempts)
	}
	if r := reads(); r != 0 {
		t.Fatalf("the second increment read etcd %d times; its last commit knew n", r)
	}

	// Another writer: the known value is stale, the commit fails, the
	// function runs again with a read. No update is lost.
	put("n", 100)
	if err := incr(1000); err != nil || get("n") != 101 || attempts != 2 || reads() != 1 {
		t.Fatalf("after another writer: %v, n = %d (want 101), %d attempts", err, get("n"), attempts)
	}
	// For a while after a stale answer, reads go to etcd.
	if err := incr(1000); err != nil || get("n") != 102 || reads() != 1 {
		t.Fatalf("right after a stale answer: %v, n = %d", err, get("n"))
	}
	time.Sleep(1100 * time.Millisecond)
	if err := incr(1000); err != nil || get("n") != 103 || reads() != 0 {
		t.Fatalf("a second later: %v, n = %d (want answered from what it knew)", err, get("n"))
	}

	// A refusal decided on a known value is decided again with a read: the
	// limit is 50, this writer knows n = 103, another writer set 5.
	put("n", 5)
	if err := incr(50); err != nil || get("n") != 6 {
		t.Fatalf("a refusal on a stale known value: %v, n = %d (want 6)", err, get("n"))
	}
	// A refusal on the true value stands.
	put("n", 60)
	if err := incr(50); !errors.Is(err, errFull) || get("n") != 60 {
		t.Fatalf("a refusal on the true value: %v, n = %d", err, get("n"))
	}

	// A step rolled back on a known value while another step commits (a
	// group commit): its reads would not be compared, so the whole
	// transaction runs again with reads.
	put("n", 1)
	if err := incr(1000); err != nil || get("n") != 2 { // known: n = 2
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past any cold period
	put("n", 7)                         // not known to this writer
	refusedOn := -1
	_, err := etcdtx.RunKnown(ctx, kv, known, func(tx *etcdtx.Tx) error {
		tx.Put("other", []byte("x")) // another caller's step
		sp := tx.Savepoint()
		v, _, err := tx.Get("n")
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(string(v))
		if n < 5 { // this step refuses small values
			refusedOn = n
			tx.Rollback(sp)
			return nil
		}
		refusedOn = -1
		tx.Put("n", []byte(strconv.Itoa(n+1)))
		return nil
	})
	if err != nil || refusedOn != -1 || get("n") != 8 {
		t.Fatalf("a step rolled back on a known value: %v, refused on %d, n = %d (want 8)", err, refusedOn, get("n"))
	}
}
