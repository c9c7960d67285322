package integration

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/pkg/mailcorpus"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Invariant 2: with 8 appenders spread over two storage replicas, UIDs are
// unique and ascend in commit order, HIGHESTMODSEQ rises with every change,
// and usage counters are exact.
func TestConcurrentAppendsOnTwoReplicas(t *testing.T) {
	c := newCluster(t, options{replicas: 2})
	acc := setupAccount(t, c.replicas[0], "busy@example.test", 0, 0)
	inbox := mailboxID(t, c.replicas[0], acc.Id, "INBOX")

	const writers, perWriter = 8, 200
	var mu sync.Mutex
	var acks []*storagev1.AppendMessageResponse
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := c.replicas[w%2]
			for i := 0; i < perWriter; i++ {
				resp, err := appendMsg(ctxT(t), r, acc.Id, inbox, message(w*1000+i, 1024))
				if err != nil {
					errs <- fmt.Errorf("writer %d append %d: %v", w, i, err)
					return
				}
				mu.Lock()
				acks = append(acks, resp)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Commit order is modseq order: sorted by modseq, UIDs must strictly rise.
	sort.Slice(acks, func(i, j int) bool { return acks[i].Modseq < acks[j].Modseq })
	var total uint64
	for i, a := range acks {
		total += a.Size
		if i > 0 && (a.Modseq <= acks[i-1].Modseq || a.Uid <= acks[i-1].Uid) {
			t.Fatalf("commit %d: uid %d modseq %d after uid %d modseq %d", i, a.Uid, a.Modseq, acks[i-1].Uid, acks[i-1].Modseq)
		}
	}
	mb, msgs := listAll(t, c.replicas[1], acc.Id, inbox)
	if len(msgs) != writers*perWriter {
		t.Fatalf("mailbox holds %d messages, want %d", len(msgs), writers*perWriter)
	}
	seen := map[uint32]bool{}
	for _, m := range msgs {
		if seen[m.Uid] {
			t.Fatalf("UID %d listed twice", m.Uid)
		}
		seen[m.Uid] = true
	}
	if mb.UidNext != uint32(writers*perWriter+1) || mb.HighestModseq != uint64(writers*perWriter)+1 || mb.Messages != uint32(writers*perWriter) {
		t.Fatalf("mailbox status %+v", mb)
	}
	if mb.Size != total || mb.Unseen != uint32(writers*perWriter) {
		t.Fatalf("mailbox size %d unseen %d, want %d and %d", mb.Size, mb.Unseen, total, writers*perWriter)
	}
	got, err := c.replicas[0].Accounts.GetAccount(ctxT(t), &storagev1.GetAccountRequest{AccountId: acc.Id})
	if err != nil {
		t.Fatal(err)
	}
	if q := got.Account.Quota; q.UsedMessages != uint64(writers*perWriter) || q.UsedBytes != total {
		t.Fatalf("usage %d messages %d bytes, want %d and %d", q.UsedMessages, q.UsedBytes, writers*perWriter, total)
	}
}

// Under a steady stream of deliveries to one account the group committer's
// queue never empties; every request must still return once its own change
// committed. (The committer used to make the first caller lead every batch
// until the queue emptied: that caller's delivery never returned, and its
// client timed out — and an MX would have answered 451 — on a message that
// was stored.)
func TestSteadyStreamReturnsEveryRequest(t *testing.T) {
	c := newCluster(t, options{driver: "fs"})
	r := c.replicas[0]
	acc := setupAccount(t, r, "stream@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	gen := mailcorpus.NewWithOptions(mailcorpus.Options{Seed: 3, MaxSize: 64 << 10})
	stop := time.Now().Add(25 * time.Second)
	var wg sync.WaitGroup
	var next, delivered atomic.Int64
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				i := int(next.Add(1))
				// Far longer than one commit takes here, shorter than the stream.
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				resp, err := deliver(ctx, r, []string{"stream@example.test"}, gen.Message(i))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("delivery %d: %w", i, err)
					return
				}
				if s := resp.Results[0].Status; s != storagev1.RecipientResult_STATUS_DELIVERED {
					errs <- fmt.Errorf("delivery %d: %v", i, s)
					return
				}
				delivered.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, msgs := listAll(t, r, acc.Id, inbox); int64(len(msgs)) != delivered.Load() {
		t.Fatalf("%d messages listed, %d deliveries acknowledged", len(msgs), delivered.Load())
	}
	t.Logf("%d deliveries in a steady stream", delivered.Load())
}
