package service

import (
	"fmt"
	"strings"
	"testing"
)

// The summary cache keeps the most recently used summaries within its byte
// bound and drops the least recently used first.
func TestSummaryCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newSummaryCache(300)
	sum := func(i int) []byte { // 99 bytes: with its 1-byte key, 100
		return []byte(fmt.Sprintf("%099d", i))
	}
	for i := 0; i < 3; i++ {
		c.add(fmt.Sprint(i), sum(i))
	}
	if _, ok := c.get("0"); !ok { // 0 is now the most recent
		t.Fatal("summary 0 missing before the cache is full")
	}
	c.add("3", sum(3)) // evicts 1, the least recently used
	if _, ok := c.get("1"); ok {
		t.Fatal("summary 1 kept past the bound")
	}
	for _, i := range []int{0, 2, 3} {
		k := fmt.Sprint(i)
		if got, ok := c.get(k); !ok || string(got) != string(sum(i)) {
			t.Fatalf("summary %s: %v %v", k, got, ok)
		}
	}
	if c.bytes != 300 || len(c.byKey) != 3 || c.order.Len() != 3 {
		t.Fatalf("cache holds %d bytes in %d/%d entries, want 300 in 3", c.bytes, len(c.byKey), c.order.Len())
	}
	c.add("big", make([]byte, 298)) // larger than the whole cache: not kept
	if _, ok := c.get("big"); ok || c.bytes != 300 {
		t.Fatal("an entry larger than the cache was kept")
	}
}

// summarize takes the envelope from the header and the MIME tree from the
// whole message, whatever the line endings.
func TestSummarize(t *testing.T) {
	msg := "From: Ann <ann@example.test>\nSubject: hi\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhello\n--b--\n"
	sum, headerSize, err := summarize(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Envelope.GetSubject() != "hi" || len(sum.Envelope.From) != 1 || sum.Envelope.From[0].Mailbox != "ann" {
		t.Fatalf("envelope %v", sum.Envelope)
	}
	if headerSize != strings.Index(msg, "\n\n")+2 {
		t.Fatalf("header size %d", headerSize)
	}
	if sum.Structure.GetType() != "multipart" || len(sum.Structure.Parts) != 1 || sum.Structure.Parts[0].Subtype != "plain" {
		t.Fatalf("structure %v", sum.Structure)
	}
}
