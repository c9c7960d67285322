package service

import (
	"strings"
	"testing"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// A queued local delivery retries while the mailbox is full or storage is
// in trouble, and fails (so the sender gets a DSN) when the recipient is
// gone; the result text carries the status code the DSN reports.
func TestQueuedLocalOutcome(t *testing.T) {
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
		o := &storagev1.RecipientOutcome{Address: "a@example.test"}
		setOutcome(o, c.status)
		if o.Outcome != c.want || !strings.Contains(o.Result, c.code) {
			t.Errorf("%v: %v %q, want %v with %s", c.status, o.Outcome, o.Result, c.want, c.code)
		}
	}
}
