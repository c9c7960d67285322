package integration

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/mailfleet/mailfleet/pkg/storeclient"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// pageBudget is the storage tier's ListMessages byte budget (listing.go).
const pageBudget = 1 << 20

// manyRecipients is message n with 40 named recipients: its index entry
// with the envelope is ~1.9 KiB, so 5 000 of them are ~9 MiB.
func manyRecipients(n int) []byte {
	var to []string
	for j := 0; j < 40; j++ {
		to = append(to, fmt.Sprintf("\"Recipient %d\" <r%d.n%d@corp.example.com>", j, j, n))
	}
	return []byte(fmt.Sprintf("From: \"Sender %d\" <s%d@corp.example.com>\r\nTo: %s\r\nSubject: listing %d\r\nMessage-ID: <l%d@corp.example.com>\r\n\r\nbody %d\r\n",
		n, n, strings.Join(to, ",\r\n "), n, n, n))
}

// ListMessages pages are bounded by bytes: a mailbox whose envelopes add up
// to several times gRPC's default 4 MiB lists in pages of ~1 MiB, every UID
// once and in order, and even a request for 5 000 entries fits a message.
func TestListMessagesPagesByBytes(t *testing.T) {
	const n = 3000
	c := newCluster(t, options{})
	r := c.replicas[0]
	acc := setupAccount(t, r, "listing@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	start := time.Now()
	ctx := ctxT(t)
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if _, err := appendMsg(ctx, r, acc.Id, inbox, manyRecipients(i)); err != nil {
					errs <- fmt.Errorf("append %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("appended %d messages in %v", n, time.Since(start))

	// The frontends' client, with its explicit limits.
	adminTLS, err := pki.ClientTLS("admin")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := storeclient.Dial(r.addr, adminTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	start = time.Now()
	req := &storagev1.ListMessagesRequest{AccountId: acc.Id, MailboxId: inbox, IncludeEnvelope: true}
	var uids []uint32
	total, pages := 0, 0
	for {
		resp, err := cl.Messages.ListMessages(ctx, req)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		pages++
		size, largest := 0, 0
		for _, m := range resp.Messages {
			if m.Envelope == nil || len(m.Envelope.To) != 40 {
				t.Fatalf("UID %d: envelope %v", m.Uid, m.Envelope)
			}
			size += proto.Size(m)
			largest = max(largest, proto.Size(m))
			uids = append(uids, m.Uid)
		}
		if size > pageBudget+largest {
			t.Fatalf("page %d: %d entries of %d bytes, over the %d-byte budget plus one entry", pages, len(resp.Messages), size, pageBudget)
		}
		if resp.More && size < pageBudget-largest && len(resp.Messages) < 1000 {
			t.Fatalf("page %d cut at %d entries and %d bytes, neither limit reached", pages, len(resp.Messages), size)
		}
		total += proto.Size(resp)
		if !resp.More {
			if resp.NextAfterUid != 0 {
				t.Fatalf("last page: NextAfterUid %d", resp.NextAfterUid)
			}
			break
		}
		if len(resp.Messages) == 0 || resp.NextAfterUid != uids[len(uids)-1] {
			t.Fatalf("page %d: %d entries, NextAfterUid %d after UID %d", pages, len(resp.Messages), resp.NextAfterUid, uids[len(uids)-1])
		}
		req.AfterUid, req.Revision = resp.NextAfterUid, resp.Revision
	}
	t.Logf("listed %d entries (%d bytes) in %d pages in %v", len(uids), total, pages, time.Since(start))
	if total <= 4<<20 {
		t.Fatalf("the entries add up to %d bytes: too few to exceed 4 MiB in one response", total)
	}
	checkUIDs(t, uids, 1, n, 1)

	// One request for 5 000 entries, through a client with gRPC's default
	// 4 MiB receive limit: the page is cut by bytes, not refused.
	resp, err := r.Messages.ListMessages(ctx, &storagev1.ListMessagesRequest{AccountId: acc.Id, MailboxId: inbox, IncludeEnvelope: true, Limit: 5000})
	if err != nil {
		t.Fatalf("Limit 5000: %v", err)
	}
	if !resp.More || len(resp.Messages) == 0 || proto.Size(resp) > pageBudget+16<<10 || resp.NextAfterUid != resp.Messages[len(resp.Messages)-1].Uid {
		t.Fatalf("Limit 5000: %d entries, %d bytes, More %v, NextAfterUid %d", len(resp.Messages), proto.Size(resp), resp.More, resp.NextAfterUid)
	}

	// A sparse UID set (every third message) pages the same way.
	set := &storagev1.UIDSet{}
	for u := uint32(1); u <= n; u += 3 {
		set.Ranges = append(set.Ranges, &storagev1.UIDRange{First: u, Last: u})
	}
	req = &storagev1.ListMessagesRequest{AccountId: acc.Id, MailboxId: inbox, IncludeEnvelope: true, Uids: set, Limit: 5000}
	uids = uids[:0]
	for pages = 1; ; pages++ {
		resp, err := cl.Messages.ListMessages(ctx, req)
		if err != nil {
			t.Fatalf("sparse page %d: %v", pages, err)
		}
		for _, m := range resp.Messages {
			uids = append(uids, m.Uid)
		}
		if !resp.More {
			break
		}
		req.AfterUid, req.Revision = resp.NextAfterUid, resp.Revision
	}
	if pages < 2 {
		t.Fatalf("the sparse listing took %d page(s)", pages)
	}
	checkUIDs(t, uids, 1, n, 3)
}

// checkUIDs checks that uids are first, first+step, … up to last, each once.
func checkUIDs(t *testing.T, uids []uint32, first, last, step uint32) {
	t.Helper()
	want := first
	for i, u := range uids {
		if u != want {
			t.Fatalf("entry %d is UID %d, want %d", i, u, want)
		}
		want += step
	}
	if want <= last {
		t.Fatalf("listing ended before UID %d (%d entries)", want, len(uids))
	}
}

// A sparse UID set (a client's selection across a large mailbox) is read
// span by span, skipping the gaps between: listing, STORE and EXPUNGE of
// such a set touch exactly its messages, across pages of every size.
func TestSparseUIDSets(t *testing.T) {
	const n = 2000
	c := newCluster(t, options{})
	r := c.replicas[0]
	ctx := ctxT(t)
	acc := setupAccount(t, r, "sparse@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	fillMailbox(ctx, t, r, acc.Id, inbox, n, 4, 2<<10)

	// Spans far apart, two closer than the gap the reader bridges (300 and
	// 330), a reversed range, "n:*", and many single UIDs.
	set := &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{
		{First: 700, Last: 705}, {First: 3, Last: 3}, {First: 300, Last: 300}, {First: 330, Last: 331},
		{First: 910, Last: 900}, {First: 1990, Last: 0}}}
	// More spans than one read takes (spansPerRead, 16): every 70th UID.
	for u := uint32(1000); u < 1900; u += 70 {
		set.Ranges = append(set.Ranges, &storagev1.UIDRange{First: u, Last: u})
	}
	want := []uint32{3, 300, 330, 331}
	for u := uint32(700); u <= 705; u++ {
		want = append(want, u)
	}
	for u := uint32(900); u <= 910; u++ {
		want = append(want, u)
	}
	for u := uint32(1000); u < 1900; u += 70 {
		want = append(want, u)
	}
	for u := uint32(1990); u <= n; u++ {
		want = append(want, u)
	}
	listSet := func(limit uint32) []uint32 {
		req := &storagev1.ListMessagesRequest{AccountId: acc.Id, MailboxId: inbox, Uids: set, Limit: limit}
		var got []uint32
		for page := 0; ; page++ {
			resp, err := r.Messages.ListMessages(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range resp.Messages {
				got = append(got, m.Uid)
			}
			if !resp.More {
				return got
			}
			if page > 200 {
				t.Fatalf("limit %d: still More after %d pages", limit, page)
			}
			req.AfterUid, req.Revision = resp.NextAfterUid, resp.Revision
		}
	}
	reversed := &storagev1.ListMessagesRequest{AccountId: acc.Id, MailboxId: inbox,
		Uids: &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: 910, Last: 900}}}}
	if resp, err := r.Messages.ListMessages(ctx, reversed); err != nil || len(resp.Messages) != 11 {
		t.Fatalf("ListMessages of 910:900 alone: %v, %v; want 900 to 910", resp.GetMessages(), err)
	}
	for _, limit := range []uint32{1, 4, 7, 1000} {
		if got := listSet(limit); !slices.Equal(got, want) {
			t.Fatalf("ListMessages of the set, limit %d: %v, want %v", limit, got, want)
		}
	}

	if _, err := r.Messages.StoreFlags(ctx, &storagev1.StoreFlagsRequest{AccountId: acc.Id, MailboxId: inbox,
		Uids: set, Op: storagev1.StoreFlagsRequest_OP_ADD, Flags: []string{`\Flagged`}}); err != nil {
		t.Fatal(err)
	}
	_, all := listAll(t, r, acc.Id, inbox)
	var flagged []uint32
	for _, m := range all {
		if slices.Contains(m.Flags, `\Flagged`) {
			flagged = append(flagged, m.Uid)
		}
	}
	if !slices.Equal(flagged, want) {
		t.Fatalf("STORE of the set flagged %v, want %v", flagged, want)
	}

	out, err := r.Messages.ExpungeMessages(ctx, &storagev1.ExpungeMessagesRequest{AccountId: acc.Id, MailboxId: inbox,
		Uids: set, IgnoreDeletedFlag: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out.ExpungedUids, want) {
		t.Fatalf("EXPUNGE of the set removed %v, want %v", out.ExpungedUids, want)
	}
	_, all = listAll(t, r, acc.Id, inbox)
	if len(all) != n-len(want) {
		t.Fatalf("%d messages left, want %d", len(all), n-len(want))
	}
	for _, m := range all {
		if slices.Contains(want, m.Uid) || slices.Contains(m.Flags, `\Flagged`) {
			t.Fatalf("UID %d left with flags %v", m.Uid, m.Flags)
		}
	}
}
