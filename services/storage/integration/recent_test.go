package integration

import (
	"sync"
	"testing"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// ClaimRecent (IMAP4rev1 \Recent): concurrent claims through two replicas
// hand each UID to exactly one caller; a peek moves nothing; no UID past
// UIDNEXT is handed out; a missing mailbox is NotFound.
func TestClaimRecent(t *testing.T) {
	c := newCluster(t, options{driver: "fs", replicas: 2})
	r0, r1 := c.replicas[0], c.replicas[1]
	ctx := ctxT(t)
	acc := setupAccount(t, r0, "recent@example.test", 0, 0)
	inbox := mailboxID(t, r0, acc.Id, "INBOX")
	claim := func(r *replica, upTo uint32, peek bool) *storagev1.ClaimRecentResponse {
		t.Helper()
		resp, err := r.Mailbox.ClaimRecent(ctx, &storagev1.ClaimRecentRequest{AccountId: acc.Id, MailboxId: inbox, UpToUid: upTo, Peek: peek})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i := 0; i < 40; i++ {
		if _, err := appendMsg(ctx, r0, acc.Id, inbox, message(i, 200)); err != nil {
			t.Fatal(err)
		}
	}
	if p := claim(r0, 0, true); p.FromUid != 1 || p.ToUid != 1 {
		t.Fatalf("peek of a new mailbox: %v, want cutoff 1", p)
	}
	// A claim past UIDNEXT (41) stops there.
	if got := claim(r1, 1000, false); got.FromUid != 1 || got.ToUid != 41 {
		t.Fatalf("first claim: %v, want [1, 41)", got)
	}
	for i := 0; i < 40; i++ {
		if _, err := appendMsg(ctx, r0, acc.Id, inbox, message(i, 200)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	owner := map[uint32]int{}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := c.replicas[w%2]
			for up := uint32(42); up <= 85; up += uint32(w + 1) {
				resp, err := r.Mailbox.ClaimRecent(ctx, &storagev1.ClaimRecentRequest{AccountId: acc.Id, MailboxId: inbox, UpToUid: up})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for u := resp.FromUid; u < resp.ToUid; u++ {
					owner[u]++
				}
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	for u, n := range owner {
		if n != 1 {
			t.Errorf("UID %d claimed %d times", u, n)
		}
		if u < 41 || u >= 81 {
			t.Errorf("UID %d claimed again or past UIDNEXT", u)
		}
	}
	if len(owner) != 40 {
		t.Errorf("%d of UIDs 41-80 claimed, want all", len(owner))
	}
	if p := claim(r0, 0, true); p.FromUid != 81 {
		t.Fatalf("cutoff after the claims: %v, want 81", p)
	}
	if got := claim(r1, 81, false); got.ToUid != got.FromUid {
		t.Fatalf("claim with nothing new: %v", got)
	}
	// Missing mailbox.
	if _, err := r0.Mailbox.ClaimRecent(ctx, &storagev1.ClaimRecentRequest{AccountId: acc.Id, MailboxId: "nosuchmailbox", UpToUid: 5}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_MAILBOX_NOT_FOUND {
		t.Fatalf("claim on a missing mailbox: %v", err)
	}
}
