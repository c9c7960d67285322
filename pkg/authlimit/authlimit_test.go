package authlimit

import (
	"testing"
	"time"
)

func TestLockoutAndDelay(t *testing.T) {
	l := New(3, time.Minute, 5*time.Minute, 100*time.Millisecond)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	if d := l.Failed("1.2.3.4", "a@x"); d != 100*time.Millisecond {
		t.Fatalf("first delay %v", d)
	}
	if d := l.Failed("1.2.3.4", " A@X. "); d != 200*time.Millisecond {
		t.Fatalf("second delay (another spelling of the same user) %v", d)
	}
	if l.Locked("1.2.3.4", "a@x") {
		t.Fatal("locked after 2 of 3 failures")
	}
	// The same user guessed from elsewhere is not locked out here.
	l.Failed("5.6.7.8", "a@x")
	if l.Locked("1.2.3.4", "a@x") || l.Locked("9.9.9.9", "a@x") {
		t.Fatal("failures from another address locked the user out")
	}
	l.Failed("1.2.3.4", "b@x") // the address's third failure
	if !l.Locked("1.2.3.4", "c@x") {
		t.Fatal("address not locked after 3 failures")
	}
	if l.Locked("9.9.9.9", "a@x") || l.Locked("5.6.7.8", "b@x") {
		t.Fatal("another address locked")
	}
	now = now.Add(6 * time.Minute)
	if l.Locked("1.2.3.4", "a@x") {
		t.Fatal("lockout did not end")
	}
	l.Failed("1.2.3.4", "c@x")
	l.Succeeded("1.2.3.4", "C@x.")
	if l.entries[userKey("1.2.3.4", "c@x")] != nil {
		t.Fatal("success did not clear the user's failures")
	}
}

// An IPv6 client counts by its /64; IPv4 and IPv4-mapped IPv6 alike.
func TestClientKey(t *testing.T) {
	cases := map[string]string{
		"192.0.2.1":            "192.0.2.1",
		"::ffff:192.0.2.1":     "192.0.2.1",
		"2001:db8:1:2::1":      "2001:db8:1:2::_64",
		"2001:db8:1:2:ffff::9": "2001:db8:1:2::_64",
		"2001:db8:1:3::1":      "2001:db8:1:3::_64",
		"not an address":       "other:not an address",
	}
	for in, want := range cases {
		if got := ClientKey(in); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", in, got, want)
		}
	}
}
