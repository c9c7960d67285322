package integration

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// An append over quota is refused with a distinguishable error and writes
// nothing: no entry, usage unchanged, no body left behind.
func TestOverQuotaWritesNothing(t *testing.T) {
	c := newCluster(t, options{})
	r := c.replicas[0]
	ctx := ctxT(t)
	acc := setupAccount(t, r, "small@example.test", 10_000, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	first, err := appendMsg(ctx, r, acc.Id, inbox, message(1, 6000))
	if err != nil {
		t.Fatal(err)
	}
	before := c.objectCount()

	// Announced size over quota: refused before the upload.
	_, err = appendMsg(ctx, r, acc.Id, inbox, message(2, 6000))
	if status.Code(err) != codes.FailedPrecondition || storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_OVER_QUOTA {
		t.Fatalf("append over quota: %v, want FailedPrecondition OVER_QUOTA", err)
	}
	// Size not announced: refused at commit, after the upload.
	stream, err := r.Messages.AppendMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&storagev1.AppendMessageRequest{Part: &storagev1.AppendMessageRequest_Metadata_{Metadata: &storagev1.AppendMessageRequest_Metadata{AccountId: acc.Id, MailboxId: inbox}}})
	stream.Send(&storagev1.AppendMessageRequest{Part: &storagev1.AppendMessageRequest_Chunk{Chunk: &storagev1.BodyChunk{Data: message(3, 6000)}}})
	if _, err := stream.CloseAndRecv(); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_OVER_QUOTA {
		t.Fatalf("unannounced append over quota: %v, want OVER_QUOTA", err)
	}
	// Delivery to a full mailbox says so per recipient.
	resp, err := deliver(ctx, r, []string{"small@example.test"}, message(4, 6000))
	if err != nil || resp.Results[0].Status != storagev1.RecipientResult_STATUS_OVER_QUOTA {
		t.Fatalf("delivery to a full mailbox: %v %v", resp, err)
	}

	mb, msgs := listAll(t, r, acc.Id, inbox)
	if len(msgs) != 1 || mb.Messages != 1 || mb.UidNext != 2 || mb.Size != first.Size {
		t.Fatalf("refused appends left traces: %d entries, status %+v", len(msgs), mb)
	}
	got, _ := r.Accounts.GetAccount(ctx, &storagev1.GetAccountRequest{AccountId: acc.Id})
	if got.Account.Quota.UsedBytes != first.Size || got.Account.Quota.UsedMessages != 1 {
		t.Fatalf("usage changed: %+v", got.Account.Quota)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.objectCount() != before {
		if time.Now().After(deadline) {
			t.Fatalf("refused bodies left in the store: %d objects, want %d", c.objectCount(), before)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Raising the quota lets mail in again; message quotas count too.
	if _, err := r.Accounts.SetQuota(ctx, &storagev1.SetQuotaRequest{AccountId: acc.Id, LimitBytes: 0, LimitMessages: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := appendMsg(ctx, r, acc.Id, inbox, message(5, 6000)); err != nil {
		t.Fatalf("append after raising the quota: %v", err)
	}
	if _, err := appendMsg(ctx, r, acc.Id, inbox, message(6, 100)); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_OVER_QUOTA {
		t.Fatalf("third message with a 2-message quota: %v", err)
	}
}
