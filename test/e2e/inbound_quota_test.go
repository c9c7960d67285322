package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/fakemx"
)

// startMXAndQueue starts an MX, a submission process (whose queue runner
// delivers queued mail) and a loopback DNS whose MX for remote.example is a
// fake server on loopback.
func startMXAndQueue(t *testing.T, storageArgs ...string) (*cluster.Cluster, *fakemx.Server) {
	t.Helper()
	dns, mx, port := startRemoteMX(t)
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Inbound: 1, Submission: 1, DNS: dns.Addr, StorageArgs: storageArgs,
		SubmissionArgs: []string{"--remote-port", port, "--retry-schedule", "1s"}})
	return c, mx
}

// bigMessage is about 8 KB: it passes RCPT for a mailbox with 5 KB free
// (no SIZE announced) and does not fit at DATA.
func bigMessage(from string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: roomy@example.test, full@example.test\r\nSubject: big one\r\n\r\n", from)
	for i := range 100 {
		fmt.Fprintf(&b, "%03d %s\r\n", i, strings.Repeat("x", 76))
	}
	return b.Bytes()
}

// A mailbox that is full at DATA although RCPT let it through (the quota
// filled in between, or no SIZE was announced): the MX has said 250 for the
// message, so the full recipient's copy waits in the queue and arrives,
// byte for byte and once, when there is room again.
func TestInboundKeepsMailForAMailboxFullAtData(t *testing.T) {
	c, _ := startMXAndQueue(t)
	roomy := c.CreateAccount("roomy@example.test", "pw-roomy-secret")
	full := c.CreateAccount("full@example.test", "pw-full-secret")
	c.SetQuota(full.Id, 5000, 0)
	if err := sendSMTP(c.Inbound[0].SMTP, "s@remote.example", []string{"roomy@example.test", "full@example.test"}, bigMessage("s@remote.example")); err != nil {
		t.Fatalf("the MX refused: %v", err)
	}
	roomyCopy, _ := inboxBodies(t, c, roomy.Id)
	if len(roomyCopy) != 1 {
		t.Fatalf("roomy has %d messages, want 1", len(roomyCopy))
	}
	if got, _ := inboxBodies(t, c, full.Id); len(got) != 0 {
		t.Fatalf("the full mailbox took %d messages", len(got))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := c.Queue().ListQueue(ctx, &storagev1.ListQueueRequest{})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("queue: %v items, err %v; want the full mailbox's copy", len(list.GetItems()), err)
	}
	item := list.Items[0]
	if !item.Local || len(item.Recipients) != 1 || item.Recipients[0].Address != "full@example.test" {
		t.Fatalf("queued: %+v", item)
	}

	show, err := mailctlCommand(c, c.Storage[0].Addr, "queue", "show", item.Id).CombinedOutput()
	if err != nil || !strings.Contains(string(show), "delivery: local") || !strings.Contains(string(show), "recipient: full@example.test PENDING") {
		t.Fatalf("mailctl queue show: %v\n%s", err, show)
	}
	list2, err := mailctlCommand(c, c.Storage[0].Addr, "queue", "list").CombinedOutput()
	if err != nil || !strings.Contains(string(list2), item.Id+"  local") {
		t.Fatalf("mailctl queue list: %v\n%s", err, list2)
	}

	// Still full: the runner's attempts leave it queued.
	waitFor(t, "a failed attempt", 20*time.Second, func() bool {
		got, err := c.Queue().GetQueueItem(ctx, &storagev1.GetQueueItemRequest{Id: item.Id})
		return err == nil && got.Item.Attempts > 0 && strings.Contains(got.Item.LastError, "4.2.2")
	})
	c.SetQuota(full.Id, 0, 0)
	if _, err := c.Queue().RetryQueueItem(ctx, &storagev1.RetryQueueItemRequest{Id: item.Id}); err != nil {
		t.Fatal(err)
	}
	var fullCopy [][]byte
	waitFor(t, "the queued copy in the mailbox with room", 30*time.Second, func() bool {
		fullCopy, _ = inboxBodies(t, c, full.Id)
		return len(fullCopy) > 0
	})
	if len(fullCopy) != 1 || !bytes.Equal(fullCopy[0], roomyCopy[0]) {
		t.Fatalf("full got %d messages; same bytes as roomy's copy: %v", len(fullCopy), len(fullCopy) == 1 && bytes.Equal(fullCopy[0], roomyCopy[0]))
	}
	waitFor(t, "the queue to empty", 20*time.Second, func() bool {
		list, err := c.Queue().ListQueue(ctx, &storagev1.ListQueueRequest{})
		return err == nil && len(list.Items) == 0
	})
	if got, _ := inboxBodies(t, c, full.Id); len(got) != 1 {
		t.Fatalf("full has %d messages after the queue emptied, want 1", len(got))
	}
}

// A mailbox that stays full until the queue lifetime ends: the remote
// sender gets a DSN through its own MX, from the null sender.
func TestInboundBouncesToTheRemoteSenderWhenTheMailboxStaysFull(t *testing.T) {
	c, mx := startMXAndQueue(t, "--queue-lifetime", "3s")
	roomy := c.CreateAccount("roomy@example.test", "pw-roomy-secret")
	full := c.CreateAccount("full@example.test", "pw-full-secret")
	c.SetQuota(full.Id, 5000, 0)
	if err := sendSMTP(c.Inbound[0].SMTP, "s@remote.example", []string{"roomy@example.test", "full@example.test"}, bigMessage("s@remote.example")); err != nil {
		t.Fatalf("the MX refused: %v", err)
	}
	waitFor(t, "a DSN at the sender's MX", 30*time.Second, func() bool { return len(mx.Received()) > 0 })
	dsn := mx.Received()[0]
	if dsn.From != "" || len(dsn.To) != 1 || dsn.To[0] != "s@remote.example" {
		t.Fatalf("DSN envelope: from %q to %v, want <> to s@remote.example", dsn.From, dsn.To)
	}
	for _, want := range []string{"multipart/report", "Final-Recipient: rfc822; full@example.test", "Action: failed", "Status: 5.2.2", "Subject: big one"} {
		if !bytes.Contains(dsn.Data, []byte(want)) {
			t.Fatalf("DSN lacks %q:\n%s", want, dsn.Data)
		}
	}
	if got, _ := inboxBodies(t, c, roomy.Id); len(got) != 1 {
		t.Fatalf("roomy has %d messages, want 1", len(got))
	}
	if got, _ := inboxBodies(t, c, full.Id); len(got) != 0 {
		t.Fatalf("full has %d messages, want 0", len(got))
	}
	time.Sleep(2 * time.Second) // a second DSN would have arrived by now
	if n := len(mx.Received()); n != 1 {
		t.Fatalf("%d DSNs, want 1", n)
	}
}

// An account deleted between RCPT and DATA while another recipient takes
// the message: the 250 covers both, so the deleted one is not dropped in
// silence — the sender gets a DSN naming it, once.
func TestInboundBouncesForARecipientDeletedAfterRCPT(t *testing.T) {
	c, mx := startMXAndQueue(t)
	roomy := c.CreateAccount("roomy@example.test", "pw-roomy-secret")
	leaving := c.CreateAccount("leaving@example.test", "pw-leaving-secret")
	r := rawSMTP(t, c.Inbound[0].SMTP)
	r.cmd("EHLO client.remote.example", "250")
	r.cmd("MAIL FROM:<s@remote.example>", "250")
	r.cmd("RCPT TO:<roomy@example.test>", "250")
	r.cmd("RCPT TO:<leaving@example.test>", "250")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Accounts.DeleteAccount(ctx, &storagev1.DeleteAccountRequest{AccountId: leaving.Id}); err != nil {
		t.Fatal(err)
	}
	r.cmd("DATA", "354")
	r.cmd("From: s@remote.example\r\nSubject: farewell\r\n\r\nhello\r\n.", "250")
	waitFor(t, "a DSN at the sender's MX", 30*time.Second, func() bool { return len(mx.Received()) > 0 })
	dsn := mx.Received()[0]
	if dsn.From != "" || len(dsn.To) != 1 || dsn.To[0] != "s@remote.example" {
		t.Fatalf("DSN envelope: from %q to %v", dsn.From, dsn.To)
	}
	for _, want := range []string{"Final-Recipient: rfc822; leaving@example.test", "Status: 5.1.1", "Subject: farewell"} {
		if !bytes.Contains(dsn.Data, []byte(want)) {
			t.Fatalf("DSN lacks %q:\n%s", want, dsn.Data)
		}
	}
	if got, _ := inboxBodies(t, c, roomy.Id); len(got) != 1 {
		t.Fatalf("roomy has %d messages, want 1", len(got))
	}
	waitFor(t, "the queue to empty", 20*time.Second, func() bool {
		list, err := c.Queue().ListQueue(ctx, &storagev1.ListQueueRequest{})
		return err == nil && len(list.Items) == 0
	})
	if n := len(mx.Received()); n != 1 {
		t.Fatalf("%d DSNs, want 1", n)
	}
}
