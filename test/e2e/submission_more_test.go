package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"os/exec"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/fakemx"
)

// python3's smtplib submits over 465 and 587 with AUTH.
func TestSubmissionWithPythonSmtplib(t *testing.T) {
	c, _, _ := startSubmission(t, 1)
	c.CreateAccount("amy@example.test", "amy-secret-pw")
	bob := c.CreateAccount("bob@example.test", "bob-secret-pw")
	host, p587 := split(c.Submission[0].Submission)
	_, p465 := split(c.Submission[0].Submissions)
	out, err := exec.Command("python3", "testdata/smtp_submission.py", host, p587, p465, "amy@example.test", "amy-secret-pw", "bob@example.test").CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	if bodies, _ := inboxBodies(t, c, bob.Id); len(bodies) != 2 {
		t.Fatalf("bob has %d messages, want 2", len(bodies))
	}
}

// mailctl shows and manages the queue.
func TestMailctlQueue(t *testing.T) {
	c, _, mx := startSubmission(t, 1, "--deliver=false")
	c.CreateAccount("amy@example.test", "amy-secret-pw")
	for i := 0; i < 2; i++ {
		if err := submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"zed@remote.example"},
			[]byte("From: amy@example.test\r\nSubject: held\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	mailctl := func(args ...string) string {
		t.Helper()
		cmd := mailctlCommand(c, c.Storage[0].Addr, args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mailctl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	list := mailctl("queue", "list")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 3 || !strings.Contains(list, "amy@example.test") {
		t.Fatalf("queue list:\n%s", list)
	}
	id := strings.Fields(lines[1])[0]
	show := mailctl("queue", "show", id)
	if !strings.Contains(show, "recipient: zed@remote.example PENDING") {
		t.Fatalf("queue show:\n%s", show)
	}
	mailctl("queue", "retry", id)
	mailctl("queue", "delete", id)
	if list := mailctl("queue", "list"); strings.Count(list, "\n") != 2 {
		t.Fatalf("after delete:\n%s", list)
	}
	if len(mx.Received()) != 0 {
		t.Fatal("--deliver=false delivered mail")
	}
}

// A remote that keeps answering 4xx: after the queue lifetime the sender
// gets a DSN saying the message expired.
func TestQueueExpiry(t *testing.T) {
	c, _, mx := startSubmission(t, 1, "--queue-lifetime", "2s")
	amy := c.CreateAccount("amy@example.test", "amy-secret-pw")
	mx.Set(func(s *fakemx.Server) {
		s.RcptReply = &gosmtp.SMTPError{Code: 450, EnhancedCode: gosmtp.EnhancedCode{4, 2, 1}, Message: "try later"}
	})
	if err := submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"zed@remote.example"},
		[]byte("From: amy@example.test\r\nSubject: slow\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	var dsn []byte
	waitFor(t, "an expiry DSN", 20*time.Second, func() bool {
		b, _ := inboxBodies(t, c, amy.Id)
		if len(b) == 1 {
			dsn = b[0]
		}
		return len(b) == 1
	})
	if !strings.Contains(string(dsn), "expired after") || !strings.Contains(string(dsn), "450") || !strings.Contains(string(dsn), "Final-Recipient: rfc822; zed@remote.example") {
		t.Fatalf("expiry DSN:\n%s", dsn)
	}
}

// A static route sends a domain's mail to a fixed next hop, without DNS.
func TestQueueStaticRoute(t *testing.T) {
	mx, err := fakemx.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer mx.Close()
	c, _, _ := startSubmission(t, 1, "--routes", "partner.example="+mx.Addr)
	c.CreateAccount("amy@example.test", "amy-secret-pw")
	if err := submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"p@partner.example"},
		[]byte("From: amy@example.test\r\nSubject: routed\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery through the static route", 10*time.Second, func() bool { return len(mx.Received()) == 1 })
}

// A local recipient whose mailbox is too full for the message at DATA
// (RCPT found room): the submission still says 250 for the remote
// recipient, and the local copy waits in the queue until there is room.
func TestSubmissionQueuesForAFullLocalMailbox(t *testing.T) {
	c, _, mx := startSubmission(t, 1)
	c.CreateAccount("amy@example.test", "amy-secret-pw")
	full := c.CreateAccount("full@example.test", "pw-full-secret")
	c.SetQuota(full.Id, 5000, 0)
	if err := submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test",
		[]string{"full@example.test", "zed@remote.example"}, bigMessage("amy@example.test")); err != nil {
		t.Fatalf("submission refused: %v", err)
	}
	waitFor(t, "the remote copy", 20*time.Second, func() bool { return len(mx.Received()) == 1 })
	if got, _ := inboxBodies(t, c, full.Id); len(got) != 0 {
		t.Fatalf("the full mailbox took %d messages", len(got))
	}
	c.SetQuota(full.Id, 0, 0)
	waitFor(t, "the local copy after the quota was raised", 30*time.Second, func() bool {
		got, _ := inboxBodies(t, c, full.Id)
		return len(got) == 1
	})
	got, _ := inboxBodies(t, c, full.Id)
	if !bytes.Contains(got[0], []byte("Subject: big one")) || !bytes.Contains(got[0], []byte("099 xxxx")) {
		t.Fatalf("local copy:\n%s", got[0])
	}
}

// Submission honours the cluster-wide login lockout of the storage tier:
// once failures reach it, even the right password gets 454 4.7.0.
func TestSubmissionClusterWideLoginLockout(t *testing.T) {
	dns, _, port := startRemoteMX(t)
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Submission: 1, DNS: dns.Addr,
		StorageArgs:    []string{"--login-failures", "2"},
		SubmissionArgs: []string{"--remote-port", port, "--login-failures", "100", "--login-failure-delay", "10ms"}})
	c.CreateAccount("amy@example.test", "amy-secret-pw")
	msg := []byte("From: amy@example.test\r\n\r\nx\r\n")
	for range 2 {
		err := submit(c.Submission[0].Submission, "amy@example.test", "wrong", "amy@example.test", []string{"amy@example.test"}, msg)
		if !strings.HasPrefix(smtpReply(err), "535") {
			t.Fatalf("wrong password: %v", err)
		}
	}
	err := submit(c.Submission[0].Submission, "amy@example.test", "amy-secret-pw", "amy@example.test", []string{"amy@example.test"}, msg)
	if !strings.HasPrefix(smtpReply(err), "454") {
		t.Fatalf("right password during the lockout: %v, want 454 4.7.0", err)
	}
}

// The reply to the end of DATA says what happened (issue: go-smtp's
// default "OK: queued" was said for mail already in a local mailbox). RFC
// 5321 4.2: the text after the code is free, so it tells the user which
// copies are in local mailboxes and which wait in the outbound queue.
func TestSubmissionDataReplySaysWhatHappened(t *testing.T) {
	c, _, _ := startSubmission(t, 1)
	c.CreateAccount("amy@example.test", "amy-secret-pw")
	c.CreateAccount("bo@example.test", "bo-secret-pw")
	conn, err := tls.Dial("tcp", c.Submission[0].Submissions, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &rawSMTPConn{t: t, conn: conn, r: bufio.NewReader(conn)}
	if l := s.reply(); !strings.HasPrefix(l, "220") {
		t.Fatalf("greeting %q", l)
	}
	s.cmd("EHLO laptop.example", "250")
	s.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00amy@example.test\x00amy-secret-pw")), "235")
	for _, tc := range []struct {
		rcpts []string
		want  string
	}{
		{[]string{"bo@example.test"}, "250 2.0.0 Delivered to 1 local mailbox as "},
		{[]string{"bo@example.test", "amy@example.test", "zed@remote.example"}, "250 2.0.0 Delivered to 2 local mailboxes, queued for 1 recipient as "},
		{[]string{"zed@remote.example", "ann@remote.example"}, "250 2.0.0 Queued for 2 recipients as "},
	} {
		s.cmd("MAIL FROM:<amy@example.test>", "250")
		for _, r := range tc.rcpts {
			s.cmd("RCPT TO:<"+r+">", "250")
		}
		s.cmd("DATA", "354")
		s.cmd("From: amy@example.test\r\nSubject: reply\r\n\r\nhi\r\n.", tc.want)
	}
}
