package e2e

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/dnstest"
)

// data sends DATA, the message (dot-stuffed) and the final dot, and returns
// the reply to the message.
func (c *rawSMTPConn) data(msg []byte) string {
	c.t.Helper()
	c.cmd("DATA", "354")
	stuffed := bytes.ReplaceAll(msg, []byte("\r\n."), []byte("\r\n.."))
	c.send(string(stuffed) + ".\r\n")
	return c.reply()
}

// A resolver that reads queries and never answers must cost each message
// about a second (2 tries of 400 ms), and the MX must answer 451 4.4.3: RFC
// 7208 8.6, "If the message is rejected during the SMTP transaction for
// this reason [temperror], the software SHOULD use an SMTP reply code of 451
// and, if supported, the 4.4.3 enhanced status code". With the system
// resolver's timeouts (5 s, 2 attempts, per lookup) this fails.
func TestInboundDroppingResolverIsBounded(t *testing.T) {
	c, dns := startMX(t)
	dns.Drop(".")
	acc := c.CreateAccount("ann@example.test", "pw-ann-secret")
	const messages = 4
	for i := range messages {
		start := time.Now()
		r := rawSMTP(t, c.Inbound[0].SMTP)
		r.cmd("EHLO client.example.org", "250")
		r.cmd(fmt.Sprintf("MAIL FROM:<s%d@example.org>", i), "250")
		r.cmd("RCPT TO:<ann@example.test>", "250")
		got := r.data([]byte(fmt.Sprintf("From: s%d@example.org\r\nSubject: dns down\r\n\r\nbody\r\n", i)))
		elapsed := time.Since(start)
		if !strings.HasPrefix(got, "451 4.4.3") {
			t.Fatalf("message %d: %q, want 451 4.4.3", i, got)
		}
		if elapsed > 3*time.Second {
			t.Fatalf("message %d took %v with a dropping resolver, want about a second", i, elapsed)
		}
		t.Logf("message %d: %v", i, elapsed.Round(time.Millisecond))
		r.cmd("QUIT", "221")
	}
	if dns.Queries() < messages*2 {
		t.Fatalf("the DNS server read %d queries, want at least 2 per message", dns.Queries())
	}
	if bodies, _ := inboxBodies(t, c, acc.Id); len(bodies) != 0 {
		t.Fatalf("%d messages stored despite the 451", len(bodies))
	}
	if v := metric(t, c.Inbound[0].Ops, `mailfleet_dns_failures_total{reason="timeout"}`); v <= 0 {
		t.Fatalf("no DNS timeouts in /metrics (%v)", v)
	}
}

// DNSBL zones (RFC 5782): the client address reversed under the zone has an
// A record in 127.0.0.0/8 (2.1: "127.0.0.2" by convention) when listed; a
// listed client's RCPT gets 554 5.7.1 naming the zone, an unlisted one
// (127.0.0.1, which 5 says a list must never contain) passes. A zone that
// does not answer is skipped by default.
func TestInboundDNSBL(t *testing.T) {
	c, dns := startMX(t, "--dnsbl", "bl.example.test,dead.example.test")
	dns.TXT("example.org", "v=spf1 ip4:127.0.0.0/8 -all")
	dns.A("2.0.0.127.bl.example.test", "127.0.0.2")
	dns.Drop("dead.example.test")
	acc := c.CreateAccount("ann@example.test", "pw-ann-secret")

	listed := rawSMTPFrom(t, "127.0.0.2", c.Inbound[0].SMTP)
	listed.cmd("EHLO client.example.org", "250")
	listed.cmd("MAIL FROM:<s@example.org>", "250")
	got := listed.cmd("RCPT TO:<ann@example.test>", "554 5.7.1")
	if !strings.Contains(got, "bl.example.test") || !strings.Contains(got, "[127.0.0.2]") {
		t.Fatalf("the refusal %q names neither the zone nor the address", got)
	}
	listed.cmd("RCPT TO:<ann@example.test>", "554 5.7.1")

	start := time.Now()
	clean := rawSMTPFrom(t, "127.0.0.1", c.Inbound[0].SMTP)
	clean.cmd("EHLO client.example.org", "250")
	clean.cmd("MAIL FROM:<s@example.org>", "250")
	clean.cmd("RCPT TO:<ann@example.test>", "250")
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Fatalf("RCPT with one zone not answering took %v", elapsed)
	}
	if got := clean.data([]byte("From: s@example.org\r\nSubject: clean\r\n\r\nhi\r\n")); !strings.HasPrefix(got, "250 2.0.0") {
		t.Fatalf("unlisted client: %q", got)
	}
	if bodies, _ := inboxBodies(t, c, acc.Id); len(bodies) != 1 {
		t.Fatalf("%d messages stored, want the unlisted client's one", len(bodies))
	}
}

// --dnsbl-temperror tempfail: a zone that cannot be asked makes RCPT 451
// 4.4.3 (RFC 5782 leaves it to the client of the list; Postfix skips by
// default, as Mailfleet does without this flag).
func TestInboundDNSBLTempFail(t *testing.T) {
	c, dns := startMX(t, "--dnsbl", "dead.example.test", "--dnsbl-temperror", "tempfail")
	dns.Drop("dead.example.test")
	c.CreateAccount("ann@example.test", "pw-ann-secret")
	r := rawSMTP(t, c.Inbound[0].SMTP)
	r.cmd("EHLO client.example.org", "250")
	r.cmd("MAIL FROM:<s@example.org>", "250")
	start := time.Now()
	r.cmd("RCPT TO:<ann@example.test>", "451 4.4.3")
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Fatalf("RCPT took %v", elapsed)
	}
}

// Long lines: RFC 5321 4.5.3.1.6 allows 1000 octets, and 4.5.3.1.10
// ("… should be treated as an extension …") lets a server take more. The
// MX takes lines up to 64 KiB and stores them unchanged, read back byte for
// byte over IMAP (RFC 9051 6.4.5: BODY[] is the whole message); one octet
// more is refused (500 5.5.2), never cut. The 250 after DATA says what
// happened (RFC 5321 4.2: the text is the server's): delivered, or queued
// for a mailbox that filled up since RCPT.
func TestInboundLongLinesAndDataReply(t *testing.T) {
	dns, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dns.Close)
	dns.TXT("example.org", "v=spf1 ip4:127.0.0.1 -all")
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Inbound: 1, Access: 1, DNS: dns.Addr})
	c.CreateAccount("ann@example.test", "pw-ann-secret")
	c.CreateAccount("ben@example.test", "pw-ben-secret")
	idPattern := regexp.MustCompile(`^250 2\.0\.0 Delivered to 1 mailbox as [0-9a-f]{16}$`)

	var sent [][]byte
	for _, n := range []int{10000, 64 << 10} {
		line := make([]byte, n)
		for i := range line {
			line[i] = "abcdefghijklmnopqrstuvwxyz0123456789+/"[i%38]
		}
		msg := []byte(fmt.Sprintf("From: s@example.org\r\nTo: ann@example.test\r\nSubject: a line of %d\r\n\r\nbefore\r\n%s\r\nafter\r\n", n, line))
		r := rawSMTP(t, c.Inbound[0].SMTP)
		r.cmd("EHLO client.example.org", "250")
		r.cmd("MAIL FROM:<s@example.org>", "250")
		r.cmd("RCPT TO:<ann@example.test>", "250")
		if got := r.data(msg); !idPattern.MatchString(got) {
			t.Fatalf("a line of %d: %q", n, got)
		}
		sent = append(sent, msg)
	}

	r := rawSMTP(t, c.Inbound[0].SMTP)
	r.cmd("EHLO client.example.org", "250")
	r.cmd("MAIL FROM:<s@example.org>", "250")
	r.cmd("RCPT TO:<ann@example.test>", "250")
	if got := r.data([]byte("Subject: too long\r\n\r\n" + strings.Repeat("z", 64<<10+1) + "\r\n")); !strings.HasPrefix(got, "500 5.5.2") {
		t.Fatalf("a line of 64 KiB + 1: %q, want 500 5.5.2", got)
	}

	imap := rawDial(t, c.Access[0].IMAPS, true)
	imap.expect("LOGIN ann@example.test pw-ann-secret", "OK")
	imap.expect("SELECT INBOX", "OK")
	for i, want := range sent {
		fmt.Fprintf(imap.conn, "f%d UID FETCH %d BODY.PEEK[]\r\n", i, i+1)
		head := imap.line()
		m := regexp.MustCompile(`BODY\[\] \{(\d+)\}$`).FindStringSubmatch(head)
		if m == nil {
			t.Fatalf("FETCH answered %q", head)
		}
		size, _ := strconv.Atoi(m[1])
		got := make([]byte, size)
		if _, err := io.ReadFull(imap.r, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(got, want) {
			t.Fatalf("message %d read back over IMAP is not the sent one (%d bytes, sent %d)", i, len(got), len(want))
		}
		for l := imap.line(); !strings.HasPrefix(l, fmt.Sprintf("f%d ", i)); l = imap.line() {
		}
	}
	// Two mailboxes: "Delivered to 2 mailboxes".
	r = rawSMTP(t, c.Inbound[0].SMTP)
	r.cmd("EHLO client.example.org", "250")
	r.cmd("MAIL FROM:<s@example.org>", "250")
	r.cmd("RCPT TO:<ann@example.test>", "250")
	r.cmd("RCPT TO:<ben@example.test>", "250")
	if got := r.data([]byte("From: s@example.org\r\nSubject: two\r\n\r\nhi\r\n")); !regexp.MustCompile(`^250 2\.0\.0 Delivered to 2 mailboxes as [0-9a-f]{16}$`).MatchString(got) {
		t.Fatalf("two recipients: %q", got)
	}
	// A mailbox with room at RCPT but not for this message: its copy is
	// queued, and the reply says so.
	full := c.CreateAccount("full@example.test", "pw-full-secret")
	c.SetQuota(full.Id, 2000, 0)
	r.cmd("MAIL FROM:<s@example.org>", "250")
	r.cmd("RCPT TO:<ann@example.test>", "250")
	r.cmd("RCPT TO:<full@example.test>", "250")
	big := "From: s@example.org\r\nSubject: big\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 100)
	if got := r.data([]byte(big)); !regexp.MustCompile(`^250 2\.0\.0 Delivered to 1 mailbox, queued for 1 as [0-9a-f]{16}$`).MatchString(got) {
		t.Fatalf("one delivered, one queued: %q", got)
	}
}
