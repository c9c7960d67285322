package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/smtp"
	"net/textproto"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/dnstest"
)

// startMX starts a cluster with one inbound process and a loopback DNS server.
func startMX(t *testing.T, inboundArgs ...string) (*cluster.Cluster, *dnstest.Server) {
	t.Helper()
	dns, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dns.Close)
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Inbound: 1, DNS: dns.Addr, InboundArgs: inboundArgs})
	return c, dns
}

// inboxBodies returns the stored bytes of every message in an account's INBOX.
func inboxBodies(t *testing.T, c *cluster.Cluster, account string) ([][]byte, []*storagev1.Message) {
	t.Helper()
	return mailboxBodies(t, c, account, "INBOX")
}

// mailboxBodies returns the stored bytes of every message in one mailbox.
func mailboxBodies(t *testing.T, c *cluster.Cluster, account, name string) ([][]byte, []*storagev1.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mb, err := c.Mailbox.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: account, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.Messages.ListMessages(ctx, &storagev1.ListMessagesRequest{AccountId: account, MailboxId: mb.Mailbox.Id})
	if err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	for _, m := range list.Messages {
		stream, err := c.Messages.GetMessageBody(ctx, &storagev1.GetMessageBodyRequest{AccountId: account, MailboxId: mb.Mailbox.Id, Uid: m.Uid})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		for {
			resp, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(resp.GetChunk().GetData())
		}
		bodies = append(bodies, buf.Bytes())
	}
	return bodies, list.Messages
}

// sendSMTP sends one message with net/smtp; it returns the error of the
// first refused step.
func sendSMTP(addr, from string, to []string, msg []byte) error {
	_, err := mxSend(addr, from, to, msg)
	return err
}

// mxSend is sendSMTP that also reports whether the MX acknowledged the
// message (250 after the data), whatever happened afterwards.
func mxSend(addr, from string, to []string, msg []byte) (acked bool, err error) {
	cl, err := smtp.Dial(addr)
	if err != nil {
		return false, err
	}
	defer cl.Close()
	if err := cl.Hello("client.example.org"); err != nil {
		return false, err
	}
	return transact(cl, from, to, msg)
}

// transact runs MAIL, RCPT, DATA and QUIT on an open session. acked reports
// whether the server took responsibility for the message (250 after the
// data); a QUIT that fails afterwards does not undo that.
func transact(cl *smtp.Client, from string, to []string, msg []byte) (acked bool, err error) {
	if err := cl.Mail(from); err != nil {
		return false, err
	}
	for _, r := range to {
		if err := cl.Rcpt(r); err != nil {
			return false, err
		}
	}
	w, err := cl.Data()
	if err != nil {
		return false, err
	}
	if _, err := w.Write(msg); err != nil {
		return false, err
	}
	if err := w.Close(); err != nil {
		return false, err
	}
	return true, cl.Quit()
}

// addedHeaders splits a stored message into what the MX prepended and the rest.
func addedHeaders(stored, original []byte) (string, bool) {
	if !bytes.HasSuffix(stored, original) {
		return "", false
	}
	return string(stored[:len(stored)-len(original)]), true
}

// One message to several local recipients: stored once, byte-identical after
// the Received and Authentication-Results headers.
func TestInboundDelivery(t *testing.T) {
	c, dns := startMX(t)
	dns.TXT("example.org", "v=spf1 ip4:127.0.0.1 -all")
	a := c.CreateAccount("ann@example.test", "pw-ann-secret")
	b := c.CreateAccount("ben@example.test", "pw-ben-secret")
	msg := []byte("From: Sender <s@example.org>\r\nTo: ann@example.test\r\nSubject: hello\r\n\r\nHi there \xe2\x9c\x93\r\n..leading dot\r\n")
	if err := sendSMTP(c.Inbound[0].SMTP, "s@example.org", []string{"ann@example.test", "BEN+news@example.test"}, msg); err != nil {
		t.Fatal(err)
	}
	// net/smtp dot-stuffs on the wire; what is stored is the message itself.
	want := msg
	var keys []string
	for _, acc := range []string{a.Id, b.Id} {
		bodies, msgs := inboxBodies(t, c, acc)
		if len(bodies) != 1 {
			t.Fatalf("account %s has %d messages", acc, len(bodies))
		}
		added, ok := addedHeaders(bodies[0], want)
		if !ok {
			t.Fatalf("stored message does not end with the sent one:\n%q", bodies[0])
		}
		if !strings.HasPrefix(added, "Received: from client.example.org ([127.0.0.1])\r\n\tby mx.example.test (Mailfleet) with ESMTP id ") ||
			!strings.Contains(added, "\r\nAuthentication-Results: mx.example.test; spf=pass ") || !strings.Contains(added, "smtp.mailfrom=s@example.org") {
			t.Fatalf("added headers:\n%s", added)
		}
		keys = append(keys, msgs[0].BodyKey)
	}
	if keys[0] != keys[1] {
		t.Fatal("one message to two recipients was stored twice")
	}
}

func TestInboundRefusals(t *testing.T) {
	c, _ := startMX(t, "--max-message-size", "10000", "--max-recipients", "2")
	c.CreateAccount("ann@example.test", "pw-ann-secret")
	c.CreateAccount("ben@example.test", "pw-ben-secret")
	c.CreateAccount("cat@example.test", "pw-cat-secret")
	r := rawSMTP(t, c.Inbound[0].SMTP)
	ehlo := r.cmd("EHLO client.example.org", "250")
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 10000", "ENHANCEDSTATUSCODES", "STARTTLS", "CHUNKING"} {
		if !strings.Contains(ehlo, ext) {
			t.Errorf("EHLO lacks %s:\n%s", ext, ehlo)
		}
	}
	if strings.Contains(ehlo, "AUTH") {
		t.Error("the MX offers AUTH")
	}
	r.cmd("MAIL FROM:<s@example.org> SIZE=20000", "552 5.3.4")
	r.cmd("MAIL FROM:<s@example.org>", "250")
	r.cmd("RCPT TO:<nobody@example.test>", "550 5.1.1")
	r.cmd("RCPT TO:<victim@elsewhere.example>", "550 5.7.1")
	r.cmd("RCPT TO:<ann@example.test>", "250")
	r.cmd("RCPT TO:<ben@example.test>", "250")
	r.cmd("RCPT TO:<cat@example.test>", "452 4.5.3")
	r.cmd("DATA", "354")
	r.cmd(strings.Repeat("x", 900)+"\r\n"+strings.Repeat(strings.Repeat("y", 900)+"\r\n", 12)+".", "552")
	r.cmd("RSET", "250")
	// Lines over 64 KiB: TestInboundLongLinesAndDataReply.
	r = rawSMTP(t, c.Inbound[0].SMTP)
	r.cmd("EHLO client.example.org", "250")
	// Over quota at RCPT: 452 4.2.2.
	acc := c.CreateAccount("full@example.test", "pw-full-secret")
	c.SetQuota(acc.Id, 1, 0)
	c.Deliver([]string{"full@example.test"}, []byte("x"))
	r.cmd("MAIL FROM:<s@example.org>", "250")
	r.cmd("RCPT TO:<full@example.test>", "452 4.2.2")
}

// SPF, DKIM and DMARC outcomes land in Authentication-Results; DMARC
// p=reject failing is refused.
func TestInboundAuthentication(t *testing.T) {
	c, dns := startMX(t)
	acc := c.CreateAccount("ann@example.test", "pw-ann-secret")
	dns.TXT("pass.example", "v=spf1 ip4:127.0.0.1 -all")
	dns.TXT("fail.example", "v=spf1 ip4:192.0.2.1 -all")
	dns.TXT("soft.example", "v=spf1 ~all")
	dns.TXT("_dmarc.strict.example", "v=DMARC1; p=reject")
	dns.TXT("strict.example", "v=spf1 -all")
	dns.TXT("_dmarc.lax.example", "v=DMARC1; p=none")
	dns.TXT("lax.example", "v=spf1 -all")
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	dns.TXT("sel._domainkey.signed.example", "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(pub))
	dns.TXT("_dmarc.signed.example", "v=DMARC1; p=reject")

	send := func(from string, msg []byte) (string, error) {
		err := sendSMTP(c.Inbound[0].SMTP, from, []string{"ann@example.test"}, msg)
		if err != nil {
			return "", err
		}
		bodies, _ := inboxBodies(t, c, acc.Id)
		last := bodies[len(bodies)-1]
		i := bytes.Index(last, []byte("Authentication-Results:"))
		j := bytes.Index(last[i:], []byte("\r\n"))
		return string(last[i : i+j]), nil
	}
	plain := func(from string) []byte {
		return []byte("From: " + from + "\r\nSubject: test\r\n\r\nbody\r\n")
	}
	cases := []struct{ from, want string }{
		{"a@pass.example", "spf=pass"},
		{"a@fail.example", "spf=fail"},
		{"a@soft.example", "spf=softfail"},
		{"a@lax.example", "dmarc=fail"},
	}
	for _, tc := range cases {
		ar, err := send(tc.from, plain(tc.from))
		if err != nil || !strings.Contains(ar, tc.want) {
			t.Errorf("%s: %q (%v), want %s", tc.from, ar, err, tc.want)
		}
	}
	if _, err := send("a@strict.example", plain("a@strict.example")); !strings.HasPrefix(smtpReply(err), "550 5.7.1") {
		t.Fatalf("DMARC p=reject failure accepted: %v", err)
	}
	// A valid DKIM signature passes DMARC even when SPF does not.
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, bytes.NewReader(plain("a@signed.example")), &dkim.SignOptions{Domain: "signed.example", Selector: "sel", Signer: priv}); err != nil {
		t.Fatal(err)
	}
	ar, err := send("a@signed.example", signed.Bytes())
	if err != nil || !strings.Contains(ar, "dkim=pass") || !strings.Contains(ar, "header.d=signed.example") || !strings.Contains(ar, "dmarc=pass") {
		t.Fatalf("valid DKIM: %q %v", ar, err)
	}
	// The same signature over a changed body fails, and DMARC then rejects.
	broken := bytes.Replace(signed.Bytes(), []byte("body"), []byte("b0dy"), 1)
	if _, err := send("a@signed.example", broken); !strings.HasPrefix(smtpReply(err), "550 5.7.1") {
		t.Fatalf("broken DKIM with p=reject accepted: %v", err)
	}
	// A forged Authentication-Results claiming to be ours is removed.
	forged := []byte("Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=evil\r\nFrom: a@soft.example\r\n\r\nhi\r\n")
	if err := sendSMTP(c.Inbound[0].SMTP, "a@soft.example", []string{"ann@example.test"}, forged); err != nil {
		t.Fatal(err)
	}
	bodies, _ := inboxBodies(t, c, acc.Id)
	if n := bytes.Count(bodies[len(bodies)-1], []byte("Authentication-Results: mx.example.test")); n != 1 || bytes.Contains(bodies[len(bodies)-1], []byte("smtp.mailfrom=evil")) {
		t.Fatalf("forged Authentication-Results kept:\n%s", bodies[len(bodies)-1])
	}
}

// SMTP smuggling: bare LF sequences never end DATA and never make two messages.
func TestInboundSmuggling(t *testing.T) {
	c, _ := startMX(t)
	acc := c.CreateAccount("ann@example.test", "pw-ann-secret")
	for _, payload := range []string{
		"Subject: a\r\n\r\nfirst\n.\nMAIL FROM:<x@evil.example>\r\nRCPT TO:<ann@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n",
		"Subject: a\r\n\r\nfirst\r\n.\nMAIL FROM:<x@evil.example>\r\n.\r\n",
		"Subject: a\r\n\r\nfirst\r.\rMAIL FROM:<x@evil.example>\r\n.\r\n",
	} {
		r := rawSMTP(t, c.Inbound[0].SMTP)
		r.cmd("EHLO client.example.org", "250")
		r.cmd("MAIL FROM:<s@example.org>", "250")
		r.cmd("RCPT TO:<ann@example.test>", "250")
		r.cmd("DATA", "354")
		r.send(payload)
		l := r.line()
		if strings.HasPrefix(l, "250") {
			// Accepted as one message (\r.\r is not a line ending at all).
			if strings.Contains(payload, "\n.\n") || strings.Contains(payload, "\r\n.\n") {
				t.Fatalf("bare-LF payload accepted: %q", payload)
			}
		} else if !strings.HasPrefix(l, "550 5.5.2") {
			t.Fatalf("payload %q: %q", payload, l)
		}
		r.cmd("QUIT", "221")
	}
	bodies, _ := inboxBodies(t, c, acc.Id)
	for _, b := range bodies {
		if bytes.Contains(b, []byte("Subject: smuggled")) && !bytes.Contains(b, []byte("first")) {
			t.Fatal("a smuggled second message was stored")
		}
	}
	if len(bodies) > 1 {
		t.Fatalf("%d messages stored from three single transactions with bare-LF tricks", len(bodies))
	}
}

// Storage down during DATA: 451, and nothing half-delivered shows up later.
func TestInboundStorageDownDuringData(t *testing.T) {
	c, _ := startMX(t)
	acc := c.CreateAccount("ann@example.test", "pw-ann-secret")
	r := rawSMTP(t, c.Inbound[0].SMTP)
	r.cmd("EHLO client.example.org", "250")
	r.cmd("MAIL FROM:<s@example.org>", "250")
	r.cmd("RCPT TO:<ann@example.test>", "250")
	r.cmd("DATA", "354")
	c.Storage[0].Signal(syscall.SIGKILL)
	r.cmd("Subject: x\r\n\r\nbody\r\n.", "451 4.3.0")
	c.Storage[0].Start()
	time.Sleep(500 * time.Millisecond)
	if bodies, _ := inboxBodies(t, c, acc.Id); len(bodies) != 0 {
		t.Fatalf("%d messages visible after a 451", len(bodies))
	}
	// And the MX works again once storage is back.
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := sendSMTP(c.Inbound[0].SMTP, "s@example.org", []string{"ann@example.test"}, []byte("Subject: y\r\n\r\nb\r\n"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("MX still failing after storage came back: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// smtpReply renders a net/smtp error as "code text" ("" for nil).
func smtpReply(err error) string {
	var te *textproto.Error
	if errors.As(err, &te) {
		return fmt.Sprintf("%d %s", te.Code, te.Msg)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func startDNS(t *testing.T) (*dnstest.Server, error) {
	t.Helper()
	dns, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dns.Close)
	return dns, nil
}

// The header section is bounded as Postfix bounds it (header_size_limit):
// a To: folded over 100 000 addresses (3 MB, quadratic to parse) is refused
// at the end of DATA with 552 5.3.4, the connection stays usable, and a
// message with a large but ordinary header (1 000 recipients) is stored.
func TestInboundHeaderLimits(t *testing.T) {
	c, _ := startMX(t)
	acc := c.CreateAccount("ann@example.test", "pw-ann-secret")
	var to strings.Builder
	to.WriteString("To: a0@x.example")
	for i := 1; i < 100000; i++ {
		fmt.Fprintf(&to, ",\r\n a%d@x.example", i)
	}
	huge := "From: s@example.org\r\n" + to.String() + "\r\nSubject: huge\r\n\r\nbody\r\n"
	r := rawSMTP(t, c.Inbound[0].SMTP)
	r.cmd("EHLO client.example.org", "250")
	r.cmd("MAIL FROM:<s@example.org>", "250")
	r.cmd("RCPT TO:<ann@example.test>", "250")
	r.cmd("DATA", "354")
	r.send(huge + ".\r\n")
	if l := r.line(); !strings.HasPrefix(l, "552 5.3.4") {
		t.Fatalf("a %d-byte header: %q, want 552 5.3.4", to.Len(), l)
	}
	many := "From: s@example.org\r\n"
	for i := 0; i < 1001; i++ {
		many += fmt.Sprintf("X-Field-%d: %d\r\n", i, i)
	}
	r.cmd("MAIL FROM:<s@example.org>", "250")
	r.cmd("RCPT TO:<ann@example.test>", "250")
	r.cmd("DATA", "354")
	r.send(many + "\r\nbody\r\n.\r\n")
	if l := r.line(); !strings.HasPrefix(l, "552 5.3.4") {
		t.Fatalf("1 002 header fields: %q, want 552 5.3.4", l)
	}
	var ordinary strings.Builder
	ordinary.WriteString("From: s@example.org\r\nSubject: all hands\r\nTo: r0@corp.example")
	for i := 1; i < 1000; i++ {
		fmt.Fprintf(&ordinary, ",\r\n r%d@corp.example", i)
	}
	ordinary.WriteString("\r\n\r\nhello\r\n")
	r.cmd("MAIL FROM:<s@example.org>", "250")
	r.cmd("RCPT TO:<ann@example.test>", "250")
	r.cmd("DATA", "354")
	r.send(ordinary.String() + ".\r\n")
	if l := r.line(); !strings.HasPrefix(l, "250") {
		t.Fatalf("a header with 1 000 recipients (%d bytes): %q", ordinary.Len(), l)
	}
	r.cmd("QUIT", "221")
	if bodies, _ := inboxBodies(t, c, acc.Id); len(bodies) != 1 || !bytes.Contains(bodies[0], []byte("all hands")) {
		t.Fatalf("%d messages stored, want only the ordinary one", len(bodies))
	}
}

// A command line still incomplete when its read deadline passes is not run
// and the connection ends (RFC 5321 4.5.3.2): a client dripping a command
// one byte at a time neither gets it executed nor resets the timer.
func TestInboundIncompleteCommandAtTheDeadline(t *testing.T) {
	c, _ := startMX(t, "--command-timeout", "2s")
	c.CreateAccount("ann@example.test", "pw-ann-secret")
	r := rawSMTP(t, c.Inbound[0].SMTP)
	r.cmd("EHLO client.example.org", "250")
	r.cmd("MAIL FROM:<s@example.org>", "250")
	// A whole RCPT command but for its CRLF, dripped a byte at a time; the
	// deadline passes before the CRLF would come.
	for _, b := range []byte("RCPT TO:<ann@example.test>") {
		if _, err := r.conn.Write([]byte{b}); err != nil {
			break // the server closed it: the point of the test
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2500 * time.Millisecond)
	r.conn.Write([]byte("\r\n"))
	var got []string
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		l, err := r.r.ReadString('\n')
		if err != nil {
			break // closed
		}
		got = append(got, strings.TrimRight(l, "\r\n"))
	}
	for _, l := range got {
		if strings.HasPrefix(l, "250") {
			t.Fatalf("the fragment was run as a command: %q", got)
		}
	}
	if len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "421") {
		t.Fatalf("replies %q, want a 421 and the connection closed", got)
	}
}
