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
	if d := l.Failed("1.2.3.4", "a@x"); d != 200*time.Millisecond {
		t.Fatalf("second delay %v", d)
	}
	if l.Locked("1.2.3.4", "a@x") {
		t.Fatal("locked after 2 of 3 failures")
	}
	l.Failed("5.6.7.8", "A@X") // same user from elsewhere: the user is now locked
	if !l.Locked("9.9.9.9", "a@x") {
		t.Fatal("username not locked after 3 failures from any IP")
	}
	if l.Locked("9.9.9.9", "b@x") {
		t.Fatal("another user of another IP locked")
	}
	now = now.Add(6 * time.Minute)
	if l.Locked("1.2.3.4", "a@x") {
		t.Fatal("lockout did not end")
	}
	l.Failed("1.2.3.4", "c@x")
	l.Succeeded("1.2.3.4", "c@x")
	if l.entries["user:c@x"] != nil {
		t.Fatal("success did not clear the user's failures")
	}
}
