package integration

import (
	"testing"
	"time"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// An account lock is exclusive cluster-wide and expires when its holder stops
// renewing it (a crashed POP3 pod does not lock a maildrop forever).
func TestAccountLock(t *testing.T) {
	c := newCluster(t, options{replicas: 2, driver: "fs"})
	a, b := c.replicas[0], c.replicas[1]
	ctx := ctxT(t)
	acc := setupAccount(t, a, "pop@example.test", 0, 0)

	l1, err := a.Accounts.LockAccount(ctx, &storagev1.LockAccountRequest{AccountId: acc.Id, Name: "maildrop", TtlSeconds: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Accounts.LockAccount(ctx, &storagev1.LockAccountRequest{AccountId: acc.Id, Name: "maildrop"}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_IN_USE {
		t.Fatalf("second lock: %v, want IN_USE", err)
	}
	if _, err := b.Accounts.LockAccount(ctx, &storagev1.LockAccountRequest{AccountId: "nobody", Name: "maildrop"}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_ACCOUNT_NOT_FOUND {
		t.Fatalf("lock of an unknown account: %v", err)
	}
	// Renewed past its TTL, it holds.
	for i := 0; i < 3; i++ {
		time.Sleep(time.Second)
		if _, err := a.Accounts.RenewAccountLock(ctx, &storagev1.RenewAccountLockRequest{LockId: l1.LockId, AccountId: acc.Id, Name: "maildrop"}); err != nil {
			t.Fatalf("renew: %v", err)
		}
	}
	if _, err := b.Accounts.LockAccount(ctx, &storagev1.LockAccountRequest{AccountId: acc.Id, Name: "maildrop"}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_IN_USE {
		t.Fatalf("renewed lock was taken: %v", err)
	}
	// Not renewed, it expires and another session takes it.
	var l2 *storagev1.LockAccountResponse
	deadline := time.Now().Add(10 * time.Second)
	for {
		l2, err = b.Accounts.LockAccount(ctx, &storagev1.LockAccountRequest{AccountId: acc.Id, Name: "maildrop", TtlSeconds: 30})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock never expired: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := a.Accounts.RenewAccountLock(ctx, &storagev1.RenewAccountLockRequest{LockId: l1.LockId, AccountId: acc.Id, Name: "maildrop"}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_LEASE_LOST {
		t.Fatalf("renewing an expired lock: %v, want LEASE_LOST", err)
	}
	// The old holder's unlock does not release the new holder's lock.
	a.Accounts.UnlockAccount(ctx, &storagev1.UnlockAccountRequest{AccountId: acc.Id, Name: "maildrop", LockId: l1.LockId})
	if _, err := a.Accounts.LockAccount(ctx, &storagev1.LockAccountRequest{AccountId: acc.Id, Name: "maildrop"}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_IN_USE {
		t.Fatalf("stale unlock released the new lock: %v", err)
	}
	if _, err := b.Accounts.UnlockAccount(ctx, &storagev1.UnlockAccountRequest{AccountId: acc.Id, Name: "maildrop", LockId: l2.LockId}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Accounts.LockAccount(ctx, &storagev1.LockAccountRequest{AccountId: acc.Id, Name: "maildrop"}); err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
}
