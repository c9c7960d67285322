package integration

import (
	"fmt"
	"sort"
	"sync"
	"testing"

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
	if mb.UidNext != uint32(writers*perWriter+1) || mb.HighestModseq != uint64(writers*perWriter) || mb.Messages != uint32(writers*perWriter) {
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
