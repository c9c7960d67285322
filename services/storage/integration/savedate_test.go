package integration

import (
	"testing"
	"time"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Every index entry gets its save date (IMAP SAVEDATE, RFC 8514) when the
// instance is made: APPEND, delivery, COPY, MOVE; the internal date stays
// what the client gave.
func TestSaveDate(t *testing.T) {
	c := newCluster(t, options{driver: "fs"})
	r := c.replicas[0]
	ctx := ctxT(t)
	acc := setupAccount(t, r, "saved@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	other, err := r.Mailbox.CreateMailbox(ctx, &storagev1.CreateMailboxRequest{AccountId: acc.Id, Name: "Other"})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Unix()
	if _, err := appendMsg(ctx, r, acc.Id, inbox, message(1, 300)); err != nil {
		t.Fatal(err)
	}
	if _, err := appendMany(ctx, r, acc.Id, inbox, [][]byte{message(2, 300)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := deliver(ctx, r, []string{"saved@example.test"}, message(3, 300)); err != nil {
		t.Fatal(err)
	}
	after := time.Now().Unix() + 1
	_, msgs := listAll(t, r, acc.Id, inbox)
	if len(msgs) != 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	for _, m := range msgs {
		if m.SaveDate == nil || m.SaveDate.Seconds < before || m.SaveDate.Seconds > after {
			t.Fatalf("UID %d: save date %v, want within [%d, %d]", m.Uid, m.SaveDate, before, after)
		}
	}
	beforeCopy := time.Now().Unix()
	if _, err := r.Messages.CopyMessages(ctx, &storagev1.CopyMessagesRequest{AccountId: acc.Id, MailboxId: inbox,
		Uids: &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: 1, Last: 1}}}, DestMailboxId: other.Mailbox.Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Messages.MoveMessages(ctx, &storagev1.MoveMessagesRequest{AccountId: acc.Id, MailboxId: inbox,
		Uids: &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: 2, Last: 2}}}, DestMailboxId: other.Mailbox.Id}); err != nil {
		t.Fatal(err)
	}
	_, copies := listAll(t, r, acc.Id, other.Mailbox.Id)
	if len(copies) != 2 {
		t.Fatalf("%d messages in the destination", len(copies))
	}
	for _, m := range copies {
		if m.SaveDate == nil || m.SaveDate.Seconds < beforeCopy {
			t.Fatalf("copied/moved UID %d: save date %v, want at or after %d", m.Uid, m.SaveDate, beforeCopy)
		}
	}
}
