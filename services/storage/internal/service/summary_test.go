package service

import (
	"fmt"
	"strings"
	"testing"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// The summary cache keeps the most recently used summaries within its byte
// bound and drops the least recently used first.
func TestSummaryCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newSummaryCache(300)
	sum := func(i int) *records.Summary {
		return &records.Summary{Envelope: &storagev1.Envelope{Subject: fmt.Sprint(i)}}
	}
	for i := 0; i < 3; i++ {
		c.add(fmt.Sprint(i), sum(i), 100)
	}
	if _, ok := c.get("0"); !ok { // 0 is now the most recent
		t.Fatal("summary 0 missing before the cache is full")
	}
	c.add("3", sum(3), 100) // evicts 1, the least recently used
	if _, ok := c.get("1"); ok {
		t.Fatal("summary 1 kept past the bound")
	}
	for _, k := range []string{"0", "2", "3"} {
		if got, ok := c.get(k); !ok || got.Envelope.Subject != k {
			t.Fatalf("summary %s: %v %v", k, got, ok)
		}
	}
	if c.bytes != 300 || len(c.byKey) != 3 || c.order.Len() != 3 {
		t.Fatalf("cache holds %d bytes in %d/%d entries, want 300 in 3", c.bytes, len(c.byKey), c.order.Len())
	}
	c.add("big", sum(9), 301) // larger than the whole cache: not kept
	if _, ok := c.get("big"); ok || c.bytes != 300 {
		t.Fatal("an entry larger than the cache was kept")
	}
}

// summarize takes the envelope from the header and the MIME tree from the
// whole message, whatever the line endings.
func TestSummarize(t *testing.T) {
	msg := "From: Ann <ann@example.test>\nSubject: hi\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhello\n--b--\n"
	sum, err := summarize(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Envelope.GetSubject() != "hi" || len(sum.Envelope.From) != 1 || sum.Envelope.From[0].Mailbox != "ann" {
		t.Fatalf("envelope %v", sum.Envelope)
	}
	if sum.Structure.GetType() != "multipart" || len(sum.Structure.Parts) != 1 || sum.Structure.Parts[0].Subtype != "plain" {
		t.Fatalf("structure %v", sum.Structure)
	}
}
