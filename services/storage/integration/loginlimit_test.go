package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

func authenticate(ctx context.Context, r *replica, user, pass, ip string) error {
	_, err := r.Accounts.Authenticate(ctx, &storagev1.AuthenticateRequest{Username: user, Password: pass, ClientIp: ip})
	return err
}

// Failed logins count for the whole cluster, whichever replica saw them,
// per client address and per account from that address (as Dovecot's auth
// penalty): the limit-th failure locks the address out, and the account
// from that address, on every replica and without the password being
// checked — but not the account's owner from anywhere else. Every spelling
// of an account's address (case, spaces, a trailing dot, an alias) counts
// as the account; an IPv6 client counts by its /64.
func TestLoginLockoutIsClusterWide(t *testing.T) {
	c := newCluster(t, options{replicas: 2, extraArgs: []string{"--login-failures", "3", "--login-lockout", "3s"}})
	ctx := ctxT(t)
	ann := setupAccount(t, c.replicas[0], "ann@example.test", 0, 0)
	setupAccount(t, c.replicas[0], "bob@example.test", 0, 0)
	if _, err := c.replicas[0].Accounts.AddAlias(ctx, &storagev1.AddAliasRequest{Alias: "anna@example.test", AccountId: ann.Id}); err != nil {
		t.Fatal(err)
	}
	pw := "pw-ann@example.test" // setupAccount's password scheme
	if err := authenticate(ctx, c.replicas[0], "ann@example.test", pw, "192.0.2.1"); err != nil {
		t.Fatalf("right password before any failure: %v", err)
	}
	locked := func(r *replica, user, pass, ip string) bool {
		return storagev1.ReasonOf(authenticate(ctx, r, user, pass, ip)) == storagev1.ErrorReason_ERROR_REASON_LOGIN_LOCKED
	}
	fail := func(r *replica, user, ip string) {
		t.Helper()
		if err := authenticate(ctx, r, user, "wrong", ip); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_AUTH_FAILED {
			t.Fatalf("%s from %s: %v, want AUTH_FAILED", user, ip, err)
		}
	}
	// Three spellings of ann, alternating replicas: one count.
	fail(c.replicas[0], "ANN@Example.Test.", "192.0.2.1")
	fail(c.replicas[1], " ann@example.test ", "192.0.2.1")
	fail(c.replicas[0], "anna@example.test", "192.0.2.1")
	for i, r := range c.replicas {
		if !locked(r, "ann@example.test.", pw, "192.0.2.1") {
			t.Fatalf("replica %d: ann is not locked out from the guessing address", i)
		}
		if !locked(r, "bob@example.test", "pw-bob@example.test", "192.0.2.1") {
			t.Fatalf("replica %d: the guessing address is not locked out", i)
		}
	}
	// The owner elsewhere is not locked out by someone else's guessing.
	if err := authenticate(ctx, c.replicas[1], "ann@example.test", pw, "192.0.2.99"); err != nil {
		t.Fatalf("ann from another address: %v", err)
	}
	// Usernames that name no account count against the address only.
	for i := range 3 {
		fail(c.replicas[i%2], "nobody"+string(rune('a'+i))+"@example.test", "192.0.2.7")
	}
	if !locked(c.replicas[0], "bob@example.test", "pw-bob@example.test", "192.0.2.7") {
		t.Fatal("guessing unknown usernames did not lock the address out")
	}
	// IPv6: the /64 is one client.
	fail(c.replicas[0], "bob@example.test", "2001:db8:1:2::1")
	fail(c.replicas[1], "bob@example.test", "2001:db8:1:2::2")
	fail(c.replicas[0], "bob@example.test", "2001:db8:1:2:ffff::3")
	if !locked(c.replicas[1], "bob@example.test", "pw-bob@example.test", "2001:db8:1:2::abcd") {
		t.Fatal("three addresses of one /64 are not one client")
	}
	if err := authenticate(ctx, c.replicas[1], "bob@example.test", "pw-bob@example.test", "2001:db8:1:3::1"); err != nil {
		t.Fatalf("bob from another /64: %v", err)
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

// The failure records stay bounded: a username that names no account makes
// no record of its own, whatever is guessed.
func TestLoginFailureRecordsAreBounded(t *testing.T) {
	c := newCluster(t, options{extraArgs: []string{"--login-failures", "1000"}})
	ctx := ctxT(t)
	setupAccount(t, c.replicas[0], "ann@example.test", 0, 0)
	for i := range 40 {
		user := []string{"ann@example.test", "Ann@Example.Test.", "x%d@example.test", "garbage %d"}[i%4]
		if strings.Contains(user, "%d") {
			user = fmt.Sprintf(user, i)
		}
		if err := authenticate(ctx, c.replicas[0], user, "wrong", "192.0.2.10"); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_AUTH_FAILED {
			t.Fatalf("%q: %v", user, err)
		}
	}
	resp, err := c.etcdClient().Get(ctx, "/mailfleet/v1/loginfail/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	if len(keys) != 2 {
		t.Fatalf("40 failures from one address under 40 names left %d records, want 2 (the address; ann from it): %v", len(keys), keys)
	}
}
