package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

func enqueue(t *testing.T, r *replica, from string, rcpts []string, body []byte) *storagev1.QueueItem {
	t.Helper()
	stream, err := r.Queue.Enqueue(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&storagev1.EnqueueRequest{Part: &storagev1.EnqueueRequest_Metadata_{Metadata: &storagev1.EnqueueRequest_Metadata{MailFrom: from, Recipients: rcpts}}})
	stream.Send(&storagev1.EnqueueRequest{Part: &storagev1.EnqueueRequest_Chunk{Chunk: &storagev1.BodyChunk{Data: body}}})
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	return resp.Item
}

// The queue hands an item to one runner at a time; an expired lease makes it
// available again; a completed item never comes back.
func TestQueueLeases(t *testing.T) {
	c := newCluster(t, options{replicas: 2})
	a, b := c.replicas[0], c.replicas[1]
	ctx := ctxT(t)
	item := enqueue(t, a, "sender@example.test", []string{"x@remote.example", "y@remote.example"}, message(1, 1000))

	l1, err := a.Queue.Lease(ctx, &storagev1.LeaseRequest{MaxItems: 10, TtlSeconds: 2})
	if err != nil || len(l1.Items) != 1 || l1.Items[0].Id != item.Id {
		t.Fatalf("first lease: %v %v", l1, err)
	}
	if l2, err := b.Queue.Lease(ctx, &storagev1.LeaseRequest{MaxItems: 10}); err != nil || len(l2.Items) != 0 {
		t.Fatalf("a leased item was handed out twice: %v %v", l2, err)
	}
	// The first runner "dies": its lease expires and another runner gets it.
	var l3 *storagev1.LeaseResponse
	deadline := time.Now().Add(15 * time.Second)
	for {
		l3, err = b.Queue.Lease(ctx, &storagev1.LeaseRequest{MaxItems: 10, TtlSeconds: 30})
		if err != nil {
			t.Fatal(err)
		}
		if len(l3.Items) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("item not handed out again after its lease expired")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The dead runner's late report is refused.
	if _, err := a.Queue.Complete(ctx, &storagev1.CompleteRequest{Id: item.Id, LeaseId: l1.LeaseId}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_LEASE_LOST {
		t.Fatalf("complete with an expired lease: %v", err)
	}
	// One recipient delivered, one deferred: retried later, not now.
	rec, err := b.Queue.RecordAttempt(ctx, &storagev1.RecordAttemptRequest{Id: item.Id, LeaseId: l3.LeaseId,
		Outcomes: []*storagev1.RecipientOutcome{
			{Address: "x@remote.example", Outcome: storagev1.RecipientOutcome_OUTCOME_DELIVERED, Result: "250 ok"},
			{Address: "y@remote.example", Outcome: storagev1.RecipientOutcome_OUTCOME_DEFERRED, Result: "451 try later"},
		}, NextAttemptAt: timestamppb.New(time.Now().Add(time.Second))})
	if err != nil || rec.Removed || rec.Item.Attempts != 1 {
		t.Fatalf("record attempt: %v %v", rec, err)
	}
	if l, _ := a.Queue.Lease(ctx, &storagev1.LeaseRequest{MaxItems: 10}); len(l.Items) != 0 {
		t.Fatal("deferred item handed out before its next attempt")
	}
	time.Sleep(1200 * time.Millisecond)
	l4, err := a.Queue.Lease(ctx, &storagev1.LeaseRequest{MaxItems: 10})
	if err != nil || len(l4.Items) != 1 {
		t.Fatalf("deferred item not due after its time: %v %v", l4, err)
	}
	body, err := a.Queue.GetQueueBody(ctx, &storagev1.GetQueueBodyRequest{Id: item.Id})
	if err != nil {
		t.Fatal(err)
	}
	if chunk, err := body.Recv(); err != nil || len(chunk.Chunk.Data) == 0 {
		t.Fatalf("queue body: %v", err)
	}
	// Permanent failure: the DSN is owed; Bounce finishes the item.
	rec, err = a.Queue.RecordAttempt(ctx, &storagev1.RecordAttemptRequest{Id: item.Id, LeaseId: l4.LeaseId,
		Outcomes: []*storagev1.RecipientOutcome{{Address: "y@remote.example", Outcome: storagev1.RecipientOutcome_OUTCOME_FAILED, Result: "550 no such user"}}})
	if err != nil || rec.Removed {
		t.Fatalf("record failure: %v %v", rec, err)
	}
	bounce, err := a.Queue.Bounce(ctx, &storagev1.BounceRequest{Id: item.Id, LeaseId: l4.LeaseId})
	if err != nil || !bounce.Removed {
		t.Fatalf("bounce: %v %v", bounce, err)
	}
	list, _ := a.Queue.ListQueue(ctx, &storagev1.ListQueueRequest{})
	if len(list.Items) != 0 {
		t.Fatalf("queue still lists %v", list.Items)
	}
	time.Sleep(2500 * time.Millisecond) // past the old lease TTLs
	if l, _ := b.Queue.Lease(context.Background(), &storagev1.LeaseRequest{MaxItems: 10}); len(l.Items) != 0 {
		t.Fatal("a finished item was handed out again")
	}
}

// Items that slow deliveries hold do not hide the rest of the queue: with
// more items leased than one Lease call looks at, the next call still finds
// the due ones, and two runners draining the queue through two replicas at
// once never get the same item.
func TestQueueLeaseSkipsLeasedItems(t *testing.T) {
	c := newCluster(t, options{replicas: 2})
	a, b := c.replicas[0], c.replicas[1]
	ctx := ctxT(t)
	const total = 120
	for i := range total {
		enqueue(t, a, "sender@example.test", []string{fmt.Sprintf("r%d@remote.example", i)}, message(i, 300))
	}
	// 60 items held by "slow deliveries" (long leases, never settled).
	held := map[string]bool{}
	for range 6 {
		l, err := a.Queue.Lease(ctx, &storagev1.LeaseRequest{MaxItems: 10, TtlSeconds: 600})
		if err != nil || len(l.Items) != 10 {
			t.Fatalf("lease: %d items, %v", len(l.GetItems()), err)
		}
		for _, it := range l.Items {
			held[it.Id] = true
		}
	}
	// The queue lists in pages, in id order, each item once, leased or not
	// (a queue in an outage is larger than one gRPC message).
	var pages, listed []string
	leasedListed := 0
	req := &storagev1.ListQueueRequest{PageSize: 25}
	for {
		page, err := b.Queue.ListQueue(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, fmt.Sprint(len(page.Items)))
		for _, it := range page.Items {
			listed = append(listed, it.Id)
			if it.Leased != held[it.Id] {
				t.Errorf("item %s listed leased=%v, held %v", it.Id, it.Leased, held[it.Id])
			}
			if it.Leased {
				leasedListed++
			}
		}
		if page.NextAfterId == "" {
			break
		}
		req.AfterId = page.NextAfterId
	}
	if strings.Join(pages, " ") != "25 25 25 25 20" || len(listed) != total || !slices.IsSorted(listed) || leasedListed != 60 {
		t.Fatalf("pages of 25: %v, %d items (sorted %v), %d leased", pages, len(listed), slices.IsSorted(listed), leasedListed)
	}
	var all []string
	if err := storagev1.ListAllQueue(ctx, a.Queue, func(items []*storagev1.QueueItem) error {
		for _, it := range items {
			all = append(all, it.Id)
		}
		return nil
	}); err != nil || !slices.Equal(all, listed) {
		t.Fatalf("ListAllQueue: %d items, %v; want the %d of the pages", len(all), err, len(listed))
	}

	// Two runners take the other 60 concurrently, one item at a time.
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for _, r := range []*replica{a, b} {
		wg.Go(func() {
			for {
				l, err := r.Queue.Lease(ctx, &storagev1.LeaseRequest{MaxItems: 3, TtlSeconds: 600})
				if err != nil {
					t.Error(err)
					return
				}
				if len(l.Items) == 0 {
					return
				}
				mu.Lock()
				for _, it := range l.Items {
					got[it.Id]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != total-len(held) {
		t.Fatalf("the runners got %d items, want the %d not held", len(got), total-len(held))
	}
	for id, n := range got {
		if n != 1 || held[id] {
			t.Fatalf("item %s handed out %d times (held elsewhere: %v)", id, n, held[id])
		}
	}
}

// Release gives an item back without counting an attempt: due again at the
// time given, not before.
func TestQueueRelease(t *testing.T) {
	c := newCluster(t, options{})
	r := c.replicas[0]
	ctx := ctxT(t)
	item := enqueue(t, r, "sender@example.test", []string{"x@remote.example"}, message(1, 500))
	l, err := r.Queue.Lease(ctx, &storagev1.LeaseRequest{MaxItems: 10, TtlSeconds: 600})
	if err != nil || len(l.Items) != 1 {
		t.Fatalf("lease: %v %v", l, err)
	}
	if _, err := r.Queue.Release(ctx, &storagev1.ReleaseRequest{Id: item.Id, LeaseId: l.LeaseId, NextAttemptAt: timestamppb.New(time.Now().Add(1500 * time.Millisecond))}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Queue.Release(ctx, &storagev1.ReleaseRequest{Id: item.Id, LeaseId: l.LeaseId}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_LEASE_LOST {
		t.Fatalf("second release with the same lease: %v", err)
	}
	if l, _ := r.Queue.Lease(ctx, &storagev1.LeaseRequest{MaxItems: 10}); len(l.Items) != 0 {
		t.Fatal("released item handed out before its time")
	}
	time.Sleep(1600 * time.Millisecond)
	l, err = r.Queue.Lease(ctx, &storagev1.LeaseRequest{MaxItems: 10})
	if err != nil || len(l.Items) != 1 || l.Items[0].Attempts != 0 {
		t.Fatalf("after the release time: %v %v", l, err)
	}
	// The delay DSN mark sticks (RFC 3464 Action: delayed is sent once).
	rec, err := r.Queue.RecordAttempt(ctx, &storagev1.RecordAttemptRequest{Id: item.Id, LeaseId: l.LeaseId, DelayNotified: true,
		Outcomes: []*storagev1.RecipientOutcome{{Address: "x@remote.example", Outcome: storagev1.RecipientOutcome_OUTCOME_DEFERRED, Result: "451 later"}}})
	if err != nil || !rec.Item.DelayNotified {
		t.Fatalf("record attempt with delay_notified: %v %v", rec, err)
	}
	got, err := r.Queue.GetQueueItem(ctx, &storagev1.GetQueueItemRequest{Id: item.Id})
	if err != nil || !got.Item.DelayNotified || got.Item.Attempts != 1 {
		t.Fatalf("stored item: %v %v", got, err)
	}
}

// A queued local delivery reuses the stored body: retrying it writes no
// object, delivering it adds a reference to the queue's body, and the
// recipient is marked delivered in the same step (so a runner that dies
// before recording the attempt does not deliver it twice).
func TestQueueDeliverQueuedReusesBody(t *testing.T) {
	c := newCluster(t, options{})
	r := c.replicas[0]
	ctx := ctxT(t)
	setupAccount(t, r, "roomy@example.test", 0, 0)
	full := setupAccount(t, r, "full@example.test", 5_000, 0)
	body := message(1, 6000)
	resp, err := deliverWith(ctx, r, &storagev1.DeliverRequest_Metadata{
		Recipients: []string{"roomy@example.test", "full@example.test"}, QueueFailedRecipients: true, MailFrom: "sender@remote.example",
	}, body)
	if err != nil || resp.LocalQueueId == "" {
		t.Fatalf("deliver: %v %v", resp, err)
	}
	objects := c.objectCount()
	lease := func() int64 {
		t.Helper()
		l, err := r.Queue.Lease(ctx, &storagev1.LeaseRequest{MaxItems: 10, TtlSeconds: 600})
		if err != nil || len(l.Items) != 1 || l.Items[0].Id != resp.LocalQueueId {
			t.Fatalf("lease: %v %v", l, err)
		}
		return l.LeaseId
	}
	// Still full: deferred, nothing written.
	id := lease()
	out, err := r.Queue.DeliverQueued(ctx, &storagev1.DeliverQueuedRequest{Id: resp.LocalQueueId, LeaseId: id})
	if err != nil || len(out.Outcomes) != 1 || out.Outcomes[0].Outcome != storagev1.RecipientOutcome_OUTCOME_DEFERRED || out.Outcomes[0].Result != "452 4.2.2 mailbox full" {
		t.Fatalf("deliver queued to a full mailbox: %v %v", out, err)
	}
	if _, err := r.Queue.Release(ctx, &storagev1.ReleaseRequest{Id: resp.LocalQueueId, LeaseId: id}); err != nil {
		t.Fatal(err)
	}
	// Room now: delivered from the same object.
	if _, err := r.Accounts.SetQuota(ctx, &storagev1.SetQuotaRequest{AccountId: full.Id}); err != nil {
		t.Fatal(err)
	}
	id = lease()
	if _, err := r.Queue.DeliverQueued(ctx, &storagev1.DeliverQueuedRequest{Id: resp.LocalQueueId, LeaseId: 12345}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_LEASE_LOST {
		t.Fatalf("deliver queued without the lease: %v", err)
	}
	out, err = r.Queue.DeliverQueued(ctx, &storagev1.DeliverQueuedRequest{Id: resp.LocalQueueId, LeaseId: id})
	if err != nil || len(out.Outcomes) != 1 || out.Outcomes[0].Outcome != storagev1.RecipientOutcome_OUTCOME_DELIVERED {
		t.Fatalf("deliver queued: %v %v", out, err)
	}
	if n := c.objectCount(); n != objects {
		t.Fatalf("%d body objects after the queued deliveries, want %d (no copy)", n, objects)
	}
	_, msgs := listAll(t, r, full.Id, mailboxID(t, r, full.Id, "INBOX"))
	if len(msgs) != 1 || msgs[0].Size != uint64(len(body)) {
		t.Fatalf("full@ INBOX: %v", msgs)
	}
	// Called again (a runner retrying after a lost reply): nothing pending.
	if out, err := r.Queue.DeliverQueued(ctx, &storagev1.DeliverQueuedRequest{Id: resp.LocalQueueId, LeaseId: id}); err != nil || len(out.Outcomes) != 0 {
		t.Fatalf("second call: %v %v", out, err)
	}
	rec, err := r.Queue.RecordAttempt(ctx, &storagev1.RecordAttemptRequest{Id: resp.LocalQueueId, LeaseId: id})
	if err != nil || !rec.Removed {
		t.Fatalf("record attempt: %v %v", rec, err)
	}
	if _, msgs := listAll(t, r, full.Id, mailboxID(t, r, full.Id, "INBOX")); len(msgs) != 1 {
		t.Fatalf("full@ has %d messages, want 1", len(msgs))
	}
	// The body lives on with the two mailbox entries.
	if n := c.objectCount(); n != objects {
		t.Fatalf("%d body objects after the item ended, want %d", n, objects)
	}
}
