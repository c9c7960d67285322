package integration

import (
	"testing"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

func uids(first, last uint32) *storagev1.UIDSet {
	return &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: first, Last: last}}}
}

// Mailbox hierarchy, flags, copy, move and expunge behave as IMAP needs.
func TestMailboxAndMessageOperations(t *testing.T) {
	c := newCluster(t, options{driver: "fs"})
	r := c.replicas[0]
	ctx := ctxT(t)
	acc := setupAccount(t, r, "ops@example.test", 0, 0)

	list, err := r.Mailbox.ListMailboxes(ctx, &storagev1.ListMailboxesRequest{AccountId: acc.Id})
	if err != nil {
		t.Fatal(err)
	}
	uses := map[string]storagev1.SpecialUse{}
	validities := map[uint32]bool{}
	for _, mb := range list.Mailboxes {
		uses[mb.Name] = mb.SpecialUse
		validities[mb.UidValidity] = true
	}
	if len(list.Mailboxes) != 6 || uses["Sent"] != storagev1.SpecialUse_SPECIAL_USE_SENT || uses["Trash"] != storagev1.SpecialUse_SPECIAL_USE_TRASH || len(validities) != 6 {
		t.Fatalf("default mailboxes: %v", list.Mailboxes)
	}

	// CREATE makes missing parents; RENAME takes children along.
	if _, err := r.Mailbox.CreateMailbox(ctx, &storagev1.CreateMailboxRequest{AccountId: acc.Id, Name: "Work/2026/Q1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Mailbox.CreateMailbox(ctx, &storagev1.CreateMailboxRequest{AccountId: acc.Id, Name: "Work"}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_MAILBOX_EXISTS {
		t.Fatalf("creating an existing mailbox: %v", err)
	}
	q1 := mailboxID(t, r, acc.Id, "Work/2026/Q1")
	if _, err := r.Mailbox.RenameMailbox(ctx, &storagev1.RenameMailboxRequest{AccountId: acc.Id, Name: "Work", NewName: "Jobs"}); err != nil {
		t.Fatal(err)
	}
	if id := mailboxID(t, r, acc.Id, "Jobs/2026/Q1"); id != q1 {
		t.Fatalf("renamed child has id %s, want %s", id, q1)
	}
	if _, err := r.Mailbox.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: acc.Id, Name: "Work/2026"}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_MAILBOX_NOT_FOUND {
		t.Fatalf("old child name still resolves: %v", err)
	}
	if _, err := r.Mailbox.DeleteMailbox(ctx, &storagev1.DeleteMailboxRequest{AccountId: acc.Id, Name: "Jobs"}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_MAILBOX_HAS_CHILDREN {
		t.Fatalf("deleting a parent: %v", err)
	}
	if _, err := r.Mailbox.DeleteMailbox(ctx, &storagev1.DeleteMailboxRequest{AccountId: acc.Id, Name: "inbox"}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_MAILBOX_PROTECTED {
		t.Fatalf("deleting INBOX: %v", err)
	}

	// Five messages in INBOX; flags with UNCHANGEDSINCE.
	inbox := mailboxID(t, r, acc.Id, "inbox")
	for i := 0; i < 5; i++ {
		if _, err := appendMsg(ctx, r, acc.Id, inbox, message(i, 500), `\Seen`); err != nil {
			t.Fatal(err)
		}
	}
	st, err := r.Messages.StoreFlags(ctx, &storagev1.StoreFlagsRequest{AccountId: acc.Id, MailboxId: inbox, Uids: uids(1, 2),
		Op: storagev1.StoreFlagsRequest_OP_ADD, Flags: []string{`\flagged`, "$Label1"}})
	if err != nil || st.HighestModseq != 7 || len(st.Messages) != 2 || st.Messages[0].Flags[0] != "$Label1" || st.Messages[0].Flags[1] != `\Flagged` {
		t.Fatalf("store: %v %v", st, err)
	}
	st, err = r.Messages.StoreFlags(ctx, &storagev1.StoreFlagsRequest{AccountId: acc.Id, MailboxId: inbox, Uids: uids(1, 3),
		Op: storagev1.StoreFlagsRequest_OP_REMOVE, Flags: []string{`\Seen`}, UnchangedSince: 6})
	if err != nil || len(st.FailedUids) != 2 || st.FailedUids[0] != 1 || len(st.Messages) != 1 || st.Messages[0].Uid != 3 {
		t.Fatalf("store unchangedsince: %v %v", st, err)
	}

	// COPY answers COPYUID pairs; MOVE moves in one step.
	arch := mailboxID(t, r, acc.Id, "Archive")
	cp, err := r.Messages.CopyMessages(ctx, &storagev1.CopyMessagesRequest{AccountId: acc.Id, MailboxId: inbox, Uids: uids(2, 4), DestMailboxId: arch})
	if err != nil || len(cp.SourceUids) != 3 || cp.DestUids[0] != 1 || cp.DestUids[2] != 3 || cp.DestUidValidity == 0 {
		t.Fatalf("copy: %v %v", cp, err)
	}
	mv, err := r.Messages.MoveMessages(ctx, &storagev1.MoveMessagesRequest{AccountId: acc.Id, MailboxId: inbox, Uids: uids(4, 0), DestMailboxId: q1})
	if err != nil || len(mv.SourceUids) != 2 || mv.SourceUids[1] != 5 || mv.DestUids[1] != 2 {
		t.Fatalf("move: %v %v", mv, err)
	}
	mb, msgs := listAll(t, r, acc.Id, inbox)
	if len(msgs) != 3 || mb.Messages != 3 || mb.Unseen != 1 {
		t.Fatalf("INBOX after move: %d messages, status %+v", len(msgs), mb)
	}
	acct, _ := r.Accounts.GetAccount(ctx, &storagev1.GetAccountRequest{AccountId: acc.Id})
	if acct.Account.Quota.UsedMessages != 8 {
		t.Fatalf("usage after copy of 3 and move of 2: %d messages, want 8", acct.Account.Quota.UsedMessages)
	}

	// Changed since a modseq lists only what changed.
	changed, err := r.Messages.ListMessages(ctx, &storagev1.ListMessagesRequest{AccountId: acc.Id, MailboxId: inbox, ChangedSince: 7})
	if err != nil || len(changed.Messages) != 1 || changed.Messages[0].Uid != 3 {
		t.Fatalf("changed since 7: %v %v", changed, err)
	}
	// Envelope comes parsed when asked.
	withEnv, err := r.Messages.ListMessages(ctx, &storagev1.ListMessagesRequest{AccountId: acc.Id, MailboxId: inbox, IncludeEnvelope: true, Uids: uids(1, 1)})
	if err != nil || len(withEnv.Messages) != 1 || withEnv.Messages[0].Envelope.GetSubject() != "message 0" || withEnv.Messages[0].Envelope.From[0].Mailbox != "sender0" {
		t.Fatalf("envelope: %v %v", withEnv, err)
	}

	// EXPUNGE removes only \Deleted; deleting a full mailbox releases usage.
	r.Messages.StoreFlags(ctx, &storagev1.StoreFlagsRequest{AccountId: acc.Id, MailboxId: inbox, Uids: uids(2, 2), Op: storagev1.StoreFlagsRequest_OP_ADD, Flags: []string{`\Deleted`}})
	ex, err := r.Messages.ExpungeMessages(ctx, &storagev1.ExpungeMessagesRequest{AccountId: acc.Id, MailboxId: inbox})
	if err != nil || len(ex.ExpungedUids) != 1 || ex.ExpungedUids[0] != 2 {
		t.Fatalf("expunge: %v %v", ex, err)
	}
	if _, err := r.Mailbox.DeleteMailbox(ctx, &storagev1.DeleteMailboxRequest{AccountId: acc.Id, Name: "Archive"}); err != nil {
		t.Fatal(err)
	}
	acct, _ = r.Accounts.GetAccount(ctx, &storagev1.GetAccountRequest{AccountId: acc.Id})
	if acct.Account.Quota.UsedMessages != 4 {
		t.Fatalf("usage after expunge and delete: %d messages, want 4", acct.Account.Quota.UsedMessages)
	}
	// A new mailbox under an old name gets a new UIDVALIDITY.
	again, err := r.Mailbox.CreateMailbox(ctx, &storagev1.CreateMailboxRequest{AccountId: acc.Id, Name: "Archive"})
	if err != nil || validities[again.Mailbox.UidValidity] {
		t.Fatalf("re-created mailbox reuses a UIDVALIDITY: %v %v", again, err)
	}
	// Isolation: another account cannot reach these mailboxes by id.
	other := setupAccount(t, r, "other@example.test", 0, 0)
	if _, err := r.Messages.ListMessages(ctx, &storagev1.ListMessagesRequest{AccountId: other.Id, MailboxId: inbox}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_MAILBOX_NOT_FOUND {
		t.Fatalf("another account listed this INBOX: %v", err)
	}
	if _, err := readBody(ctx, r, other.Id, inbox, 1, 0, 0); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_MESSAGE_NOT_FOUND {
		t.Fatalf("another account read a body: %v", err)
	}
}
