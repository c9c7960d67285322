package etcdtx_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
	"github.com/mailfleet/mailfleet/services/storage/testing/engines"
)

func newClient(t *testing.T) *clientv3.Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "etcdtx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cluster, err := engines.StartEtcd(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Stop)
	cli, err := clientv3.New(clientv3.Config{Endpoints: cluster.Endpoints(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Concurrent read-modify-writes of one key lose no update: conflicts retry.
func TestRunRetriesConflicts(t *testing.T) {
	cli := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				_, err := etcdtx.Run(ctx, cli, func(tx *etcdtx.Tx) error {
					v, _, err := tx.Get("counter")
					if err != nil {
						return err
					}
					n, _ := strconv.Atoi(string(v))
					tx.Put("counter", []byte(strconv.Itoa(n+1)))
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	resp, err := cli.Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(resp.Kvs[0].Value); got != "200" {
		t.Fatalf("counter = %s after 200 increments", got)
	}
}

// An error from the function writes nothing; Rollback undoes staged writes;
// Range sees the transaction's own writes.
func TestRunErrorRollbackAndRange(t *testing.T) {
	cli := newClient(t)
	ctx := context.Background()
	boom := errors.New("boom")
	if _, err := etcdtx.Run(ctx, cli, func(tx *etcdtx.Tx) error {
		tx.Put("a", []byte("1"))
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want boom", err)
	}
	if resp, _ := cli.Get(ctx, "a"); len(resp.Kvs) != 0 {
		t.Fatal("a failed transaction wrote")
	}
	cli.Put(ctx, "r/1", "one")
	cli.Put(ctx, "r/2", "two")
	rev, err := etcdtx.Run(ctx, cli, func(tx *etcdtx.Tx) error {
		sp := tx.Savepoint()
		tx.Put("r/9", []byte("undone"))
		tx.Rollback(sp)
		tx.Delete("r/1")
		tx.Put("r/3", []byte("three"))
		kvs, err := tx.Range("r/", "r0", 10)
		if err != nil {
			return err
		}
		if len(kvs) != 2 || kvs[0].Key != "r/2" || kvs[1].Key != "r/3" {
			t.Errorf("Range = %v, want r/2 and r/3", kvs)
		}
		return nil
	})
	if err != nil || rev == 0 {
		t.Fatalf("Run = %d, %v", rev, err)
	}
	resp, _ := cli.Get(ctx, "r/", clientv3.WithPrefix())
	if len(resp.Kvs) != 2 || string(resp.Kvs[1].Key) != "r/3" {
		t.Fatalf("after commit: %v", resp.Kvs)
	}
}

// A rolled-back step leaves neither its writes nor its compares behind:
// three steps that each read 50 keys and roll back fit in one transaction
// with a step that commits (the bug: rolled-back compares pushed batches
// over etcd's operation limit).
func TestRollbackDropsReads(t *testing.T) {
	cli := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := etcdtx.Run(ctx, cli, func(tx *etcdtx.Tx) error {
		for step := 0; step < 3; step++ {
			sp := tx.Savepoint()
			for i := 0; i < 50; i++ {
				if _, _, err := tx.Get("k/" + strconv.Itoa(step) + "/" + strconv.Itoa(i)); err != nil {
					return err
				}
			}
			tx.Put("rolled-back", []byte("x"))
			tx.Rollback(sp)
			if tx.Size() != 0 || tx.Bytes() != 0 {
				t.Fatalf("after rollback: %d ops, %d bytes", tx.Size(), tx.Bytes())
			}
		}
		tx.Put("kept", []byte("v"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "rolled-back")
	if err != nil || resp.Count != 0 {
		t.Fatalf("rolled-back write committed: %v %v", resp, err)
	}
	if resp, err := cli.Get(ctx, "kept"); err != nil || resp.Count != 1 {
		t.Fatalf("kept write missing: %v %v", resp, err)
	}
}

// Bytes are budgeted as well as operations: a transaction over MaxBytes is
// refused before it is sent (not "outcome unknown"), and one at the budget
// commits.
func TestByteBudget(t *testing.T) {
	cli := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	value := make([]byte, 100<<10)
	fill := func(n int) error {
		_, err := etcdtx.Run(ctx, cli, func(tx *etcdtx.Tx) error {
			for i := 0; i < n; i++ {
				tx.Put("big/"+strconv.Itoa(i), value)
			}
			return nil
		})
		return err
	}
	err := fill(12) // 1.2 MiB of values
	if !errors.Is(err, etcdtx.ErrTooLarge) || etcdtx.IsUncertain(err) {
		t.Fatalf("12 × 100 KiB: want ErrTooLarge, got %v", err)
	}
	if err := fill(9); err != nil {
		t.Fatalf("9 × 100 KiB: %v", err)
	}
}

// Assume saves the read of a key that exists; when the key is gone, the
// commit fails, the function runs again, and this time it learns the truth
// and nothing it staged on the assumption is written. A key the attempt has
// read and found absent is not assumed back into existence.
func TestAssumeIsCheckedAtCommit(t *testing.T) {
	cli := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.Put(ctx, "intent", ""); err != nil {
		t.Fatal(err)
	}
	attempts := 0
	commit := func(ref string) (bool, error) {
		var exists bool
		attempts = 0
		_, err := etcdtx.Run(ctx, cli, func(tx *etcdtx.Tx) error {
			attempts++
			ok, err := tx.Assume("intent")
			if err != nil {
				return err
			}
			exists = ok
			if ok {
				tx.Put("ref", []byte(ref))
			} else {
				tx.Put("refused", []byte(ref))
			}
			return nil
		})
		return exists, err
	}
	get := func(key string) string {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return ""
		}
		return string(resp.Kvs[0].Value)
	}
	if ok, err := commit("first"); err != nil || !ok || attempts != 1 || get("ref") != "first" {
		t.Fatalf("existing key: ok %v, err %v, %d attempts, ref %q", ok, err, attempts, get("ref"))
	}
	if _, err := cli.Delete(ctx, "intent"); err != nil {
		t.Fatal(err)
	}
	if ok, err := commit("second"); err != nil || ok || attempts != 2 {
		t.Fatalf("deleted key: ok %v, err %v, %d attempts (want the assumption refused, then a read)", ok, err, attempts)
	}
	if ref, refused := get("ref"), get("refused"); ref != "first" || refused != "second" {
		t.Fatalf("after the refused assumption: ref %q, refused %q; want the write made on the assumption dropped", ref, refused)
	}

	_, err := etcdtx.Run(ctx, cli, func(tx *etcdtx.Tx) error {
		if _, ok, err := tx.Get("intent"); err != nil || ok {
			return fmt.Errorf("get: %v %v", ok, err)
		}
		if ok, err := tx.Assume("intent"); err != nil || ok {
			return fmt.Errorf("Assume after reading the key absent: %v %v", ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
