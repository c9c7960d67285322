package integration

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Invariant 1: kill -9 of a storage process in the middle of a burst of
// appends loses no acknowledged message, and leaves no entry without a body.
func TestKillStorageDuringAppends(t *testing.T) {
	c := newCluster(t, options{})
	r := c.replicas[0]
	acc := setupAccount(t, r, "crash@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")

	type ack struct {
		uid  uint32
		body []byte
	}
	var mu sync.Mutex
	var acked []ack
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				body := message(w*100000+i, 2000+i%7*3000)
				callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
				resp, err := appendMsg(callCtx, r, acc.Id, inbox, body)
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, ack{resp.Uid, body})
					mu.Unlock()
				}
			}
		}(w)
	}
	// Kill once a good number of appends are in flight and acknowledged.
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 150 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.stop(syscall.SIGKILL)
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()
	r.start()

	ctx2 := ctxT(t)
	_, msgs := listAll(t, r, acc.Id, inbox)
	byUID := map[uint32]*storagev1.Message{}
	for _, m := range msgs {
		byUID[m.Uid] = m
	}
	for _, a := range acked {
		if byUID[a.uid] == nil {
			t.Fatalf("acknowledged UID %d is missing after the crash", a.uid)
		}
		got, err := readBody(ctx2, r, acc.Id, inbox, a.uid, 0, 0)
		if err != nil || !bytes.Equal(got, a.body) {
			t.Fatalf("acknowledged UID %d reads differently after the crash (%v)", a.uid, err)
		}
	}
	// Entries that were committed but never acknowledged must have bodies too.
	for _, m := range msgs {
		if _, err := readBody(ctx2, r, acc.Id, inbox, m.Uid, 0, 0); err != nil {
			t.Fatalf("entry UID %d points to a missing body: %v", m.Uid, err)
		}
	}
	t.Logf("%d acknowledged before kill -9, %d entries after restart", len(acked), len(msgs))
	if len(acked) > len(msgs) {
		t.Fatal(fmt.Sprintf("%d acknowledged but only %d stored", len(acked), len(msgs)))
	}
}

// Losing one etcd member of three does not stop appends; the member catches
// up when it comes back.
func TestEtcdMemberStoppedDuringAppends(t *testing.T) {
	c := newCluster(t, options{etcdMembers: 3})
	r := c.replicas[0]
	acc := setupAccount(t, r, "quorum@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	ctx := ctxT(t)

	appendN := func(from, n int) (ok int, failures []error) {
		for i := from; i < from+n; i++ {
			callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := appendMsg(callCtx, r, acc.Id, inbox, message(i, 1000))
			cancel()
			if err != nil {
				failures = append(failures, err)
				continue
			}
			ok++
		}
		return ok, failures
	}
	if ok, f := appendN(0, 50); ok != 50 {
		t.Fatalf("before the fault: %d of 50 appends, errors %v", ok, f)
	}
	// Stop the member the storage process is most likely talking to (the
	// first endpoint); the other two keep quorum.
	victim := c.etcd.Members[0]
	victim.Stop()
	ok, failures := appendN(50, 100)
	// A request in flight to the stopped member may fail once with a
	// temporary error while the client fails over; any other error, or more
	// than a handful, breaks the promise.
	for _, err := range failures {
		if !storagev1.IsTemporary(err) {
			t.Fatalf("append failed permanently with one member down: %v", err)
		}
	}
	if ok < 95 {
		t.Fatalf("only %d of 100 appends succeeded with one member down: %v", ok, failures)
	}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	if err := victim.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	mb, msgs := listAll(t, r, acc.Id, inbox)
	if len(msgs) != 50+ok {
		t.Fatalf("%d entries, want %d", len(msgs), 50+ok)
	}
	// The restarted member serves the latest data from its own copy.
	key := "/mailfleet/v1/accounts/" + acc.Id + "/mailboxes/" + inbox
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := memberGet(ctx, victim.ClientURL, key)
		if err == nil && len(resp.Kvs) == 1 {
			got := &storagev1.Mailbox{}
			if perr := protoUnmarshal(resp.Kvs[0].Value, got); perr == nil && got.HighestModseq == mb.HighestModseq {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted member did not catch up: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
