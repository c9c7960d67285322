package integration

import (
	"context"
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
