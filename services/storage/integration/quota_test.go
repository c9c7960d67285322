package integration

import (
	"strings"
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

// A mailbox that fills between RCPT and DATA, or an account deleted in
// between, must not lose the message once the frontend answers 250 for the
// others: with queue_failed_recipients their copy goes into the queue in the
// same step (one per account, whatever addresses named it), body kept, for a
// later delivery or a DSN; an address that never parsed is not queued; with
// nobody delivered, nothing is queued and the frontend can refuse it all.
func TestFullMailboxIsQueuedWhenOthersGetTheMessage(t *testing.T) {
	c := newCluster(t, options{})
	r := c.replicas[0]
	ctx := ctxT(t)
	roomy := setupAccount(t, r, "roomy@example.test", 0, 0)
	full := setupAccount(t, r, "full@example.test", 5_000, 0)
	if _, err := r.Accounts.AddAlias(ctx, &storagev1.AddAliasRequest{AccountId: full.Id, Alias: "full-alias@example.test"}); err != nil {
		t.Fatal(err)
	}
	body := message(1, 6000)
	meta := &storagev1.DeliverRequest_Metadata{
		Recipients:            []string{"roomy@example.test", "full@example.test", "full-alias@example.test", "gone@example.test", "not an address"},
		QueueFailedRecipients: true, MailFrom: "sender@remote.example",
	}
	resp, err := deliverWith(ctx, r, meta, body)
	if err != nil {
		t.Fatal(err)
	}
	want := []storagev1.RecipientResult_Status{storagev1.RecipientResult_STATUS_DELIVERED, storagev1.RecipientResult_STATUS_QUEUED,
		storagev1.RecipientResult_STATUS_QUEUED, storagev1.RecipientResult_STATUS_QUEUED, storagev1.RecipientResult_STATUS_UNKNOWN_USER}
	for i, res := range resp.Results {
		if res.Status != want[i] {
			t.Fatalf("result %d: %v, want %v (%v)", i, res.Status, want[i], resp.Results)
		}
	}
	if resp.LocalQueueId == "" {
		t.Fatal("no local queue id")
	}
	item, err := r.Queue.GetQueueItem(ctx, &storagev1.GetQueueItemRequest{Id: resp.LocalQueueId})
	if err != nil {
		t.Fatal(err)
	}
	var queued []string
	for _, rc := range item.Item.Recipients {
		queued = append(queued, rc.Address)
	}
	if !item.Item.Local || item.Item.MailFrom != "sender@remote.example" || strings.Join(queued, " ") != "gone@example.test full@example.test" {
		t.Fatalf("queued item: %+v", item.Item)
	}
	stream, err := r.Queue.GetQueueBody(ctx, &storagev1.GetQueueBodyRequest{Id: resp.LocalQueueId})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		chunk, err := stream.Recv()
		if err != nil {
			break
		}
		got = append(got, chunk.GetChunk().GetData()...)
	}
	if string(got) != string(body) {
		t.Fatalf("queued body: %d bytes, want the %d delivered", len(got), len(body))
	}
	if _, msgs := listAll(t, r, full.Id, mailboxID(t, r, full.Id, "INBOX")); len(msgs) != 0 {
		t.Fatalf("full mailbox got %d messages", len(msgs))
	}
	if _, msgs := listAll(t, r, roomy.Id, mailboxID(t, r, roomy.Id, "INBOX")); len(msgs) != 1 {
		t.Fatalf("roomy mailbox got %d messages, want 1", len(msgs))
	}

	// Nobody delivered: refused per recipient, nothing queued.
	meta.Recipients = []string{"full@example.test"}
	resp, err = deliverWith(ctx, r, meta, body)
	if err != nil || resp.Results[0].Status != storagev1.RecipientResult_STATUS_OVER_QUOTA || resp.LocalQueueId != "" {
		t.Fatalf("delivery to a full mailbox alone: %v %v", resp, err)
	}
	list, err := r.Queue.ListQueue(ctx, &storagev1.ListQueueRequest{})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("queue holds %d items, want 1 (%v)", len(list.Items), err)
	}
}
