package integration

import (
	"slices"
	"testing"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Subscriptions are not removed with their mailbox (RFC 3501 6.3.6), may
// name a mailbox that does not exist, and go back into the mailbox record
// when the name is created again.
func TestSubscriptionsOutliveMailboxes(t *testing.T) {
	c := newCluster(t, options{driver: "fs"})
	r := c.replicas[0]
	ctx := ctxT(t)
	acc := setupAccount(t, r, "subs@example.test", 0, 0)
	missing := func() []string {
		t.Helper()
		resp, err := r.Mailbox.ListMailboxes(ctx, &storagev1.ListMailboxesRequest{AccountId: acc.Id})
		if err != nil {
			t.Fatal(err)
		}
		return resp.SubscribedMissing
	}
	sub := func(name string, on bool) error {
		_, err := r.Mailbox.SetSubscribed(ctx, &storagev1.SetSubscribedRequest{AccountId: acc.Id, Name: name, Subscribed: on})
		return err
	}
	if _, err := r.Mailbox.CreateMailbox(ctx, &storagev1.CreateMailboxRequest{AccountId: acc.Id, Name: "Kept"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Mailbox.CreateMailbox(ctx, &storagev1.CreateMailboxRequest{AccountId: acc.Id, Name: "Dropped"}); err != nil {
		t.Fatal(err)
	}
	if err := sub("Kept", true); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Kept", "Dropped"} {
		if _, err := r.Mailbox.DeleteMailbox(ctx, &storagev1.DeleteMailboxRequest{AccountId: acc.Id, Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	if got := missing(); !slices.Equal(got, []string{"Kept"}) {
		t.Fatalf("after deleting a subscribed and an unsubscribed mailbox: %q, want [Kept]", got)
	}
	if err := sub("Never", true); err != nil {
		t.Fatalf("subscribing a name without a mailbox: %v", err)
	}
	if got := missing(); !slices.Equal(got, []string{"Kept", "Never"}) {
		t.Fatalf("subscriptions without mailboxes: %q", got)
	}
	resp, err := r.Mailbox.CreateMailbox(ctx, &storagev1.CreateMailboxRequest{AccountId: acc.Id, Name: "Kept"})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Mailbox.Subscribed {
		t.Fatalf("re-created mailbox lost its kept subscription")
	}
	if got := missing(); !slices.Equal(got, []string{"Never"}) {
		t.Fatalf("after re-creating Kept: %q", got)
	}
	if err := sub("Never", false); err != nil {
		t.Fatal(err)
	}
	if err := sub("Never", false); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_MAILBOX_NOT_FOUND {
		t.Fatalf("unsubscribing a name neither subscribed nor a mailbox: %v", err)
	}
	if got := missing(); len(got) != 0 {
		t.Fatalf("after unsubscribing: %q", got)
	}
}
