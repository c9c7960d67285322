package queue

import (
	"strings"
	"testing"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// A queued local delivery retries while the mailbox is full or storage is
// in trouble, and fails (so the sender gets a DSN) when the recipient is
// gone; the result text carries the status code the DSN reports.
func TestLocalOutcome(t *testing.T) {
	cases := []struct {
		status storagev1.RecipientResult_Status
		want   storagev1.RecipientOutcome_Outcome
		code   string
	}{
		{storagev1.RecipientResult_STATUS_DELIVERED, storagev1.RecipientOutcome_OUTCOME_DELIVERED, "250"},
		{storagev1.RecipientResult_STATUS_OVER_QUOTA, storagev1.RecipientOutcome_OUTCOME_DEFERRED, "4.2.2"},
		{storagev1.RecipientResult_STATUS_TEMPORARY_FAILURE, storagev1.RecipientOutcome_OUTCOME_DEFERRED, "4.3.0"},
		{storagev1.RecipientResult_STATUS_DISABLED, storagev1.RecipientOutcome_OUTCOME_FAILED, "5.2.1"},
		{storagev1.RecipientResult_STATUS_UNKNOWN_USER, storagev1.RecipientOutcome_OUTCOME_FAILED, "5.1.1"},
		{storagev1.RecipientResult_STATUS_NOT_LOCAL, storagev1.RecipientOutcome_OUTCOME_FAILED, "5.1.1"},
	}
	for _, c := range cases {
		o := localOutcome(&storagev1.RecipientResult{Recipient: "a@example.test", Status: c.status})
		if o.Address != "a@example.test" || o.Outcome != c.want || !strings.Contains(o.Result, c.code) {
			t.Errorf("%v: %v %q, want %v with %s", c.status, o.Outcome, o.Result, c.want, c.code)
		}
		if c.want == storagev1.RecipientOutcome_OUTCOME_FAILED && statusOf(o.Result) != c.code {
			t.Errorf("%v: DSN status %s, want %s", c.status, statusOf(o.Result), c.code)
		}
	}
}

// The DSN's Status for a recipient: the remote's permanent code as given; a
// transient one that lasted until the item expired as its permanent
// counterpart; a reply without an enhanced code as 5.0.0.
func TestStatusOf(t *testing.T) {
	for result, want := range map[string]string{
		"550 5.1.1 no such user":                               "5.1.1",
		"expired after 120h0m0s; last: 452 4.2.2 mailbox full": "5.2.2",
		"expired after 5m0s; last: connection refused":         "5.0.0",
		"554 transaction failed":                               "5.0.0",
	} {
		if got := statusOf(result); got != want {
			t.Errorf("statusOf(%q) = %s, want %s", result, got, want)
		}
	}
}
