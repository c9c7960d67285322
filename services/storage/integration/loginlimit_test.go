package integration

import (
	"context"
	"testing"
	"time"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

func authenticate(ctx context.Context, r *replica, user, pass, ip string) error {
	_, err := r.Accounts.Authenticate(ctx, &storagev1.AuthenticateRequest{Username: user, Password: pass, ClientIp: ip})
	return err
}

// Failed logins count for the whole cluster, whichever replica saw them: the
// limit-th failure locks the username and the client address out on every
// replica, without the password being checked, until the lockout ends.
func TestLoginLockoutIsClusterWide(t *testing.T) {
	c := newCluster(t, options{replicas: 2, extraArgs: []string{"--login-failures", "3", "--login-lockout", "3s"}})
	ctx := ctxT(t)
	setupAccount(t, c.replicas[0], "ann@example.test", 0, 0)
	setupAccount(t, c.replicas[0], "bob@example.test", 0, 0)
	pw := "pw-ann@example.test" // setupAccount's password scheme
	if err := authenticate(ctx, c.replicas[0], "ann@example.test", pw, "192.0.2.1"); err != nil {
		t.Fatalf("right password before any failure: %v", err)
	}
	for i := range 3 { // alternate replicas: the count is shared
		err := authenticate(ctx, c.replicas[i%2], "ann@example.test", "wrong", "192.0.2.1")
		if storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_AUTH_FAILED {
			t.Fatalf("failure %d: %v, want AUTH_FAILED", i+1, err)
		}
	}
	locked := func(r *replica, user, pass, ip string) bool {
		return storagev1.ReasonOf(authenticate(ctx, r, user, pass, ip)) == storagev1.ErrorReason_ERROR_REASON_LOGIN_LOCKED
	}
	for i, r := range c.replicas {
		if !locked(r, "ann@example.test", pw, "192.0.2.99") {
			t.Fatalf("replica %d: the username is not locked out", i)
		}
		if !locked(r, "bob@example.test", "pw-bob@example.test", "192.0.2.1") {
			t.Fatalf("replica %d: the client address is not locked out", i)
		}
	}
	if err := authenticate(ctx, c.replicas[1], "bob@example.test", "pw-bob@example.test", "192.0.2.2"); err != nil {
		t.Fatalf("another user from another address: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for locked(c.replicas[1], "ann@example.test", pw, "192.0.2.1") {
		if time.Now().After(deadline) {
			t.Fatal("still locked out long after the lockout")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := authenticate(ctx, c.replicas[1], "ann@example.test", pw, "192.0.2.1"); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
}
