package pop3

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func TestCapabilitiesFollowTLS(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.plain, false)
	c.do("CAPA", "+OK")
	caps, _ := c.lines()
	joined := strings.Join(caps, "|")
	if !strings.Contains(joined, "STLS") || strings.Contains(joined, "USER") || strings.Contains(joined, "SASL") {
		t.Fatalf("plaintext CAPA %v: want STLS and no USER/SASL", caps)
	}
	c.stls()
	c.do("CAPA", "+OK")
	caps, _ = c.lines()
	joined = strings.Join(caps, "|")
	if strings.Contains(joined, "STLS") || !strings.Contains(joined, "USER") || !strings.Contains(joined, "SASL PLAIN") || !strings.Contains(joined, "UIDL") {
		t.Fatalf("CAPA after STLS %v", caps)
	}
	c.do("STLS", "-ERR")
}

func TestNoCredentialsBeforeTLS(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.plain, false)
	c.do("USER alice@example.test", "-ERR [AUTH]")
	c.do("PASS secret", "-ERR [AUTH]")
	c.do("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice@example.test\x00secret")), "-ERR [AUTH]")
	c.stls()
	c.login("alice@example.test", "secret")
}

func TestInsecureAuthFlagAllowsPlaintext(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.AllowInsecureAuth = true })
	c := dial(t, ts.plain, false)
	c.login("alice@example.test", "secret")
}

func TestLoginFailuresAndLockout(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.implicit, true)
	c.do("PASS secret", "-ERR") // PASS without USER
	for i := 0; i < 5; i++ {
		c.do("USER alice@example.test", "+OK")
		c.do("PASS wrong", "-ERR [AUTH] authentication failed")
	}
	// Locked out now, even with the right password.
	c.do("USER alice@example.test", "+OK")
	c.do("PASS secret", "-ERR [AUTH] too many failed logins")
	// Another user from another connection of the same IP is locked too (per IP).
	c2 := dial(t, ts.implicit, true)
	c2.do("USER bob@example.test", "+OK")
	c2.do("PASS bobpw", "-ERR [AUTH] too many failed logins")
}

func TestAuthPlain(t *testing.T) {
	ts := startServer(t, nil)
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	c := dial(t, ts.implicit, true)
	c.do("AUTH CRAM-MD5", "-ERR")
	c.do("AUTH PLAIN not-base64!", "-ERR [AUTH] malformed")
	c.do("AUTH PLAIN "+enc("only-two\x00parts"), "-ERR [AUTH] malformed")
	c.do("AUTH PLAIN "+enc("bob@example.test\x00alice@example.test\x00secret"), "-ERR [AUTH] authorization identity")
	// Without an initial response: continuation, then cancel.
	c.do("AUTH PLAIN", "+ ")
	c.do("*", "-ERR")
	c.do("AUTH PLAIN", "+ ")
	c.do(enc("\x00alice@example.test\x00secret"), "+OK maildrop has 2 messages")

	c2 := dial(t, ts.implicit, true)
	c2.do("AUTH PLAIN "+enc("alice@example.test\x00alice@example.test\x00secret"), "-ERR [IN-USE]")
}

func TestUnknownCommandsBeforeLoginClose(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.plain, false)
	c.do("GET / HTTP/1.1", "-ERR")
	c.do("STAT", "-ERR")
	c.do("HELO x", "-ERR too many bad commands")
	c.expectClosed()
}

func TestSTLSRefusesPipelinedPlaintext(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.plain, false)
	c.send("STLS\r\nUSER injected")
	c.expect("-ERR")
	c.expectClosed()
}

func TestLongLineAndIdleTimeout(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.IdleTimeout = 500 * time.Millisecond })
	c := dial(t, ts.plain, false)
	c.do("USER "+strings.Repeat("x", 5000), "-ERR line too long")
	c.do("QUIT", "+OK")
	c.expectClosed()
	idle := dial(t, ts.plain, false)
	idle.expect("-ERR autologout")
	idle.expectClosed()
}
