package integration

import (
	"testing"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// A MOVE within one mailbox (IMAP MOVE to the selected mailbox) of more
// messages than one transaction holds goes in steps: every message gets a
// new UID above the old UIDNEXT, none is lost or doubled; a COPY within
// one mailbox that large is refused (TOO_MANY_ITEMS), leaving nothing.
func TestMoveWithinMailboxInSteps(t *testing.T) {
	c := newCluster(t, options{driver: "fs"})
	r := c.replicas[0]
	ctx := ctxT(t)
	acc := setupAccount(t, r, "samebox@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	const n = 400
	var bodies [][]byte
	for i := 0; i < n; i++ {
		bodies = append(bodies, message(i, 300))
	}
	if _, err := appendMany(ctx, r, acc.Id, inbox, bodies, nil); err != nil {
		t.Fatal(err)
	}
	all := &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: 1, Last: n}}}
	if _, err := r.Messages.CopyMessages(ctx, &storagev1.CopyMessagesRequest{AccountId: acc.Id, MailboxId: inbox, Uids: all, DestMailboxId: inbox}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_TOO_MANY_ITEMS {
		t.Fatalf("COPY of %d messages within the mailbox: %v, want TOO_MANY_ITEMS", n, err)
	}
	resp, err := r.Messages.MoveMessages(ctx, &storagev1.MoveMessagesRequest{AccountId: acc.Id, MailboxId: inbox, Uids: all, DestMailboxId: inbox})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.SourceUids) != n || len(resp.DestUids) != n {
		t.Fatalf("moved %d → %d UIDs, want %d", len(resp.SourceUids), len(resp.DestUids), n)
	}
	seen := map[uint32]bool{}
	for i, d := range resp.DestUids {
		if d <= n || seen[d] || resp.SourceUids[i] != uint32(i+1) {
			t.Fatalf("pair %d: %d → %d", i, resp.SourceUids[i], d)
		}
		seen[d] = true
	}
	mb, msgs := listAll(t, r, acc.Id, inbox)
	if len(msgs) != n || mb.Messages != n || msgs[0].Uid != n+1 || msgs[n-1].Uid != 2*n || mb.UidNext != 2*n+1 {
		t.Fatalf("after the move: %d entries (counter %d), UIDs %d..%d, UIDNEXT %d", len(msgs), mb.Messages, msgs[0].Uid, msgs[len(msgs)-1].Uid, mb.UidNext)
	}
}
