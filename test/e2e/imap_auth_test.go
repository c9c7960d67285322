package e2e

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// Port 143: STARTTLS first; no LOGIN or AUTHENTICATE in plaintext.
func TestIMAPAuthNeedsTLS(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("auth@example.test", "auth-secret")
	r := rawDial(t, c.Access[0].IMAP, false)
	caps := r.expect("CAPABILITY", "OK")
	if !contains(caps, "STARTTLS") || !contains(caps, "LOGINDISABLED") || contains(caps, "AUTH=PLAIN") {
		t.Fatalf("plaintext CAPABILITY %q", caps)
	}
	r.expect("LOGIN auth@example.test auth-secret", "NO")
	r.starttls()
	caps = r.expect("CAPABILITY", "OK")
	if contains(caps, "LOGINDISABLED") || !contains(caps, "AUTH=PLAIN") {
		t.Fatalf("CAPABILITY after STARTTLS %q", caps)
	}
	r.expect("LOGIN auth@example.test wrong", "NO [AUTHENTICATIONFAILED]")
	r.expect("LOGIN auth@example.test auth-secret", "OK")
	caps = r.expect("CAPABILITY", "OK")
	for _, want := range []string{"IMAP4rev2", "IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE", "LIST-STATUS", "STATUS=SIZE", "APPENDLIMIT=", "UNAUTHENTICATE", "ESEARCH", "BINARY", "NAMESPACE"} {
		if !contains(caps, want) {
			t.Errorf("CAPABILITY lacks %s: %q", want, caps)
		}
	}
	r.expect("UNAUTHENTICATE", "OK")
	r.expect("SELECT INBOX", "BAD")
	// SASL PLAIN with an initial response (SASL-IR), on port 993.
	s := rawDial(t, c.Access[0].IMAPS, true)
	ir := base64.StdEncoding.EncodeToString([]byte("\x00auth@example.test\x00auth-secret"))
	s.expect("AUTHENTICATE PLAIN "+ir, "OK")
	ns := s.expect("NAMESPACE", "OK")
	if !contains(ns, `(("" "/"))`) {
		t.Fatalf("NAMESPACE %q", ns)
	}
}

// Unknown commands before login end the connection (cross-protocol attacks).
func TestIMAPUnknownCommandBeforeLogin(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	r := rawDial(t, c.Access[0].IMAP, false)
	r.conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	if !r.closed() {
		t.Fatal("connection still open after an HTTP request")
	}
}

// Failed logins are slowed down and then locked out per client address
// and per user from that address (Dovecot's auth penalty is per address):
// every spelling of the user counts as the user, and the real user logs in
// from elsewhere meanwhile. The test is three clients on 127.0.0.2-4.
func TestIMAPLoginLockout(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1, AccessArgs: []string{"--login-failures", "3", "--login-failure-delay", "10ms"}})
	c.CreateAccount("lock@example.test", "lock-secret")
	c.CreateAccount("other@example.test", "other-secret")
	guesser := rawDialFrom(t, "127.0.0.2", c.Access[0].IMAPS, true)
	for _, user := range []string{"lock@example.test", "LOCK@Example.Test.", `" lock@example.test "`} {
		guesser.expect("LOGIN "+user+" nope", "NO")
	}
	for _, user := range []string{"lock@example.test", "lock@example.test.", "other@example.test"} {
		pass := strings.Split(user, "@")[0] + "-secret"
		if _, status := guesser.do("LOGIN " + user + " " + pass); !strings.HasPrefix(status, "NO") {
			t.Fatalf("LOGIN %s from the guessing address during the lockout: %q", user, status)
		}
	}
	owner := rawDialFrom(t, "127.0.0.3", c.Access[0].IMAPS, true)
	if _, status := owner.do("LOGIN lock@example.test lock-secret"); !strings.HasPrefix(status, "OK") {
		t.Fatalf("the owner from another address: %q", status)
	}
	// Two failures of the user from a third address do not lock it there.
	third := rawDialFrom(t, "127.0.0.4", c.Access[0].IMAPS, true)
	third.expect("LOGIN lock@example.test nope", "NO")
	third.expect("LOGIN Lock@example.test nope", "NO")
	if _, status := third.do("LOGIN lock@example.test lock-secret"); !strings.HasPrefix(status, "OK") {
		t.Fatalf("after 2 of 3 failures: %q", status)
	}
}

// The storage tier counts failed logins for the whole cluster: failures
// spread over two access pods and two protocols (each pod's own limit far
// away) lock the user out on both, and the right password does not get in.
func TestLoginLockoutAcrossPodsAndProtocols(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2,
		StorageArgs: []string{"--login-failures", "4"},
		AccessArgs:  []string{"--login-failures", "100", "--login-failure-delay", "10ms"}})
	c.CreateAccount("lock@example.test", "lock-secret")
	imapA := rawDial(t, c.Access[0].IMAPS, true)
	pop3B := pop3Dial(t, c.Access[1].POP3S)
	for i := range 2 {
		imapA.expect(fmt.Sprintf("LOGIN lock@example.test wrong%d", i), "NO")
		pop3B.do("USER lock@example.test", "+OK")
		pop3B.do(fmt.Sprintf("PASS wrong%d", i), "-ERR [AUTH] authentication failed")
	}
	if _, status := imapA.do("LOGIN lock@example.test lock-secret"); !strings.Contains(status, "[UNAVAILABLE]") {
		t.Fatalf("IMAP login on pod 1 after 4 failures in the cluster: %q", status)
	}
	pop3B.do("USER lock@example.test", "+OK")
	pop3B.do("PASS lock-secret", "-ERR [AUTH] too many failed logins")
}
