package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// One delivery to three recipients stores one body; it survives expunges from
// two mailboxes and is swept after the grace period once the third goes.
func TestDeliveryStoresBodyOnceAndSweeperRemovesIt(t *testing.T) {
	c := newCluster(t, options{sweepGrace: 2 * time.Second})
	r := c.replicas[0]
	ctx := ctxT(t)
	var accounts []*storagev1.Account
	for _, a := range []string{"one@example.test", "two@example.test", "three@example.test"} {
		accounts = append(accounts, setupAccount(t, r, a, 0, 0))
	}
	body := message(1, 5000)
	resp, err := deliver(ctx, r, []string{"one@example.test", "TWO@example.test", "three+tag@example.test", "nobody@example.test", "x@elsewhere.example"}, body)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus := []storagev1.RecipientResult_Status{
		storagev1.RecipientResult_STATUS_DELIVERED, storagev1.RecipientResult_STATUS_DELIVERED, storagev1.RecipientResult_STATUS_DELIVERED,
		storagev1.RecipientResult_STATUS_UNKNOWN_USER, storagev1.RecipientResult_STATUS_NOT_LOCAL,
	}
	for i, res := range resp.Results {
		if res.Status != wantStatus[i] {
			t.Fatalf("recipient %s: %v, want %v", res.Recipient, res.Status, wantStatus[i])
		}
	}
	if bodies, summaries := c.objectCounts(); bodies != 1 || summaries != 0 {
		t.Fatalf("bucket holds %d bodies and %d summary objects after one delivery to three, want 1 and 0 (the summary goes with the body)", bodies, summaries)
	}
	var bodyKey string
	for i, acc := range accounts {
		inbox := mailboxID(t, r, acc.Id, "INBOX")
		_, msgs := listAll(t, r, acc.Id, inbox)
		if len(msgs) != 1 {
			t.Fatalf("account %d has %d messages", i, len(msgs))
		}
		if i == 0 {
			bodyKey = msgs[0].BodyKey
		} else if msgs[0].BodyKey != bodyKey {
			t.Fatalf("bodies differ: %s vs %s", msgs[0].BodyKey, bodyKey)
		}
		got, err := readBody(ctx, r, acc.Id, inbox, msgs[0].Uid, 0, 0)
		if err != nil || string(got) != string(body) {
			t.Fatalf("account %d reads %d bytes (%v), want the delivered body", i, len(got), err)
		}
	}
	expunge := func(acc *storagev1.Account) {
		inbox := mailboxID(t, r, acc.Id, "INBOX")
		out, err := r.Messages.ExpungeMessages(ctx, &storagev1.ExpungeMessagesRequest{AccountId: acc.Id, MailboxId: inbox,
			Uids: &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: 1, Last: 1}}}, IgnoreDeletedFlag: true})
		if err != nil || len(out.ExpungedUids) != 1 {
			t.Fatalf("expunge: %v %v", out, err)
		}
	}
	expunge(accounts[0])
	expunge(accounts[1])
	time.Sleep(4 * time.Second) // two grace periods, many sweeps
	if n := c.objectCount(); n != 1 {
		t.Fatalf("body removed while one mailbox still references it (%d objects)", n)
	}
	inbox2 := mailboxID(t, r, accounts[2].Id, "INBOX")
	if got, err := readBody(ctx, r, accounts[2].Id, inbox2, 1, 0, 0); err != nil || string(got) != string(body) {
		t.Fatalf("third mailbox cannot read its message: %v", err)
	}
	expunge(accounts[2])
	if n := c.objectCount(); n != 1 {
		t.Fatalf("body removed before the grace period (%d objects)", n)
	}
	deadline := time.Now().Add(15 * time.Second)
	for bodies, summaries := c.objectCounts(); bodies+summaries != 0; bodies, summaries = c.objectCounts() {
		if time.Now().After(deadline) {
			t.Fatalf("the sweeper did not remove the unreferenced body and its summary (%d, %d left)", bodies, summaries)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Aliases, catch-alls, +subaddresses and disabled accounts resolve as users of
// Postfix and Dovecot expect.
func TestResolveRecipient(t *testing.T) {
	c := newCluster(t, options{driver: "fs"})
	r := c.replicas[0]
	ctx := ctxT(t)
	alice := setupAccount(t, r, "alice@example.test", 0, 0)
	bob := setupAccount(t, r, "bob@example.test", 0, 0)
	if _, err := r.Accounts.AddAlias(ctx, &storagev1.AddAliasRequest{Alias: "postmaster@example.test", AccountId: alice.Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Accounts.AddAlias(ctx, &storagev1.AddAliasRequest{Alias: "alice@example.test", AccountId: bob.Id}); err == nil {
		t.Fatal("an alias could take a primary address")
	}
	cases := []struct {
		addr    string
		result  storagev1.ResolveRecipientResponse_Result
		account string
	}{
		{"alice@example.test", storagev1.ResolveRecipientResponse_RESULT_LOCAL, alice.Id},
		{"Alice@Example.TEST", storagev1.ResolveRecipientResponse_RESULT_LOCAL, alice.Id},
		{"alice+lists@example.test", storagev1.ResolveRecipientResponse_RESULT_LOCAL, alice.Id},
		{"postmaster@example.test", storagev1.ResolveRecipientResponse_RESULT_LOCAL, alice.Id},
		{"carol@example.test", storagev1.ResolveRecipientResponse_RESULT_UNKNOWN_USER, ""},
		{"alice@example.org", storagev1.ResolveRecipientResponse_RESULT_NOT_LOCAL, ""},
	}
	check := func() {
		for _, tc := range cases {
			resp, err := r.Accounts.ResolveRecipient(ctx, &storagev1.ResolveRecipientRequest{Address: tc.addr})
			if err != nil {
				t.Fatalf("%s: %v", tc.addr, err)
			}
			if resp.Result != tc.result || resp.Account.GetId() != tc.account {
				t.Fatalf("%s resolved to %v %q, want %v %q", tc.addr, resp.Result, resp.Account.GetId(), tc.result, tc.account)
			}
		}
	}
	check()
	if _, err := r.Accounts.AddAlias(ctx, &storagev1.AddAliasRequest{Alias: "@example.test", AccountId: bob.Id}); err != nil {
		t.Fatal(err)
	}
	cases[4].result, cases[4].account = storagev1.ResolveRecipientResponse_RESULT_LOCAL, bob.Id
	check()
	if _, err := r.Accounts.SetDisabled(ctx, &storagev1.SetDisabledRequest{AccountId: alice.Id, Disabled: true}); err != nil {
		t.Fatal(err)
	}
	resp, err := r.Accounts.ResolveRecipient(ctx, &storagev1.ResolveRecipientRequest{Address: "alice@example.test"})
	if err != nil || resp.Result != storagev1.ResolveRecipientResponse_RESULT_DISABLED {
		t.Fatalf("disabled account resolves to %v (%v)", resp.GetResult(), err)
	}
	if _, err := r.Accounts.DeleteDomain(ctx, &storagev1.DeleteDomainRequest{Name: "example.test"}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_DOMAIN_NOT_EMPTY {
		t.Fatalf("deleting a domain with accounts: %v", err)
	}
}

// A delivery marked junk (a content filter quarantined it) lands in the
// account's Junk mailbox; an account whose Junk mailbox is gone gets it in
// INBOX rather than losing it.
func TestDeliveryToJunk(t *testing.T) {
	c := newCluster(t, options{driver: "fs"})
	r := c.replicas[0]
	ctx := ctxT(t)
	kept := setupAccount(t, r, "kept@example.test", 0, 0)
	gone := setupAccount(t, r, "gone@example.test", 0, 0)
	if _, err := r.Mailbox.DeleteMailbox(ctx, &storagev1.DeleteMailboxRequest{AccountId: gone.Id, Name: "Junk"}); err != nil {
		t.Fatal(err)
	}
	body := message(1, 2000)
	resp, err := deliverWith(ctx, r, &storagev1.DeliverRequest_Metadata{Recipients: []string{"kept@example.test", "gone@example.test"}, Junk: true}, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range resp.Results {
		if res.Status != storagev1.RecipientResult_STATUS_DELIVERED {
			t.Fatalf("%s: %v", res.Recipient, res.Status)
		}
	}
	for _, want := range []struct {
		account *storagev1.Account
		mailbox string
	}{{kept, "Junk"}, {gone, "INBOX"}} {
		id := mailboxID(t, r, want.account.Id, want.mailbox)
		if _, msgs := listAll(t, r, want.account.Id, id); len(msgs) != 1 {
			t.Fatalf("%s's %s holds %d messages, want the delivered one", want.account.Id, want.mailbox, len(msgs))
		}
	}
	if _, msgs := listAll(t, r, kept.Id, mailboxID(t, r, kept.Id, "INBOX")); len(msgs) != 0 {
		t.Fatalf("a junk delivery reached INBOX too (%d messages)", len(msgs))
	}
}

// A body's summary travels in the body's own PUT (S3 user metadata), so a
// message costs the object store one request; a body too large for one PUT
// keeps its summary as an object of its own. Either way a replica that has
// never seen the body (a cold summary cache) answers ENVELOPE and
// BODYSTRUCTURE from the store.
func TestSummaryTravelsWithItsBody(t *testing.T) {
	c := newCluster(t, options{replicas: 2})
	ctx := ctxT(t)
	acc := setupAccount(t, c.replicas[0], "one@example.test", 0, 0)
	small, large := message(1, 5000), message(2, 3<<20)
	for _, body := range [][]byte{small, large} {
		if _, err := deliver(ctx, c.replicas[0], []string{"one@example.test"}, body); err != nil {
			t.Fatal(err)
		}
	}
	if bodies, summaries := c.objectCounts(); bodies != 2 || summaries != 1 {
		t.Fatalf("bucket holds %d bodies and %d summary objects, want 2 and 1 (the large body's)", bodies, summaries)
	}
	inbox := mailboxID(t, c.replicas[0], acc.Id, "INBOX")
	_, msgs := listAll(t, c.replicas[0], acc.Id, inbox)
	mc, err := minioServer.Client()
	if err != nil {
		t.Fatal(err)
	}
	info, err := mc.StatObject(ctx, c.bucket, msgs[0].BodyKey, minio.StatObjectOptions{})
	if err != nil || info.UserMetadata["Attachment"] == "" {
		t.Fatalf("the small body's object carries no summary: %v %v", info.UserMetadata, err)
	}

	resp, err := c.replicas[1].Messages.ListMessages(ctx, &storagev1.ListMessagesRequest{AccountId: acc.Id, MailboxId: inbox,
		IncludeEnvelope: true, IncludeStructure: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Messages) != 2 {
		t.Fatalf("%d messages listed, want 2", len(resp.Messages))
	}
	for i, m := range resp.Messages {
		want := fmt.Sprintf("message %d", i+1)
		if m.Envelope.GetSubject() != want || m.Structure.GetType() != "text" {
			t.Errorf("UID %d from a cold replica: subject %q, structure %v; want %q, text", m.Uid, m.Envelope.GetSubject(), m.Structure, want)
		}
	}
}
