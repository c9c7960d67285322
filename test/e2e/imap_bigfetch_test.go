package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/test/cluster"
)

// deliverMany delivers gen(0) … gen(n-1) to rcpt's INBOX through the
// storage API, 16 at a time (so UIDs are not in the order of i).
func deliverMany(t *testing.T, c *cluster.Cluster, rcpt string, n int, gen func(i int) []byte) {
	t.Helper()
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
				if err := deliverOne(c, rcpt, gen(i)); err != nil {
					errs <- fmt.Errorf("message %d: %w", i, err)
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
}

func deliverOne(c *cluster.Cluster, rcpt string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := c.Delivery.Deliver(ctx)
	if err != nil {
		return err
	}
	stream.Send(&storagev1.DeliverRequest{Part: &storagev1.DeliverRequest_Metadata_{Metadata: &storagev1.DeliverRequest_Metadata{Recipients: []string{rcpt}}}})
	stream.Send(&storagev1.DeliverRequest{Part: &storagev1.DeliverRequest_Chunk{Chunk: &storagev1.BodyChunk{Data: body}}})
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	if s := resp.Results[0].Status; s != storagev1.RecipientResult_STATUS_DELIVERED {
		return fmt.Errorf("not delivered: %v", s)
	}
	return nil
}

// corporateMessage is message i of a corporate INBOX: 10 to 20 named
// recipients split over To and Cc, so that its envelope is ~1 KiB.
func corporateMessage(i int) []byte {
	n := 10 + i%11
	var to, cc []string
	for j := 0; j < n; j++ {
		a := fmt.Sprintf("\"Colleague %d of %d\" <p%d.m%d@corp.example.com>", j, i, j, i)
		if j < n/2 {
			to = append(to, a)
		} else {
			cc = append(cc, a)
		}
	}
	date := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	return []byte(fmt.Sprintf("From: \"Sender %d\" <sender%d@corp.example.com>\r\n"+
		"To: %s\r\nCc: %s\r\nSubject: quarterly figures %d\r\nDate: %s\r\nMessage-ID: <m%d@corp.example.com>\r\n\r\n"+
		"Body of message %d.\r\n", i, i, strings.Join(to, ",\r\n "), strings.Join(cc, ",\r\n "), i, date.Format(time.RFC1123Z), i, i))
}

// A desktop client's first sync of a 5 000-message corporate INBOX: one
// FETCH 1:* (FLAGS ENVELOPE) returns every message with its envelope
// (envelope listings once outgrew gRPC's 4 MiB message limit).
func TestIMAPFetchEnvelopes5000(t *testing.T) {
	const n = 5000
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("corp@example.test", "corp-secret")
	start := time.Now()
	deliverMany(t, c, "corp@example.test", n, corporateMessage)
	t.Logf("delivered %d messages in %v", n, time.Since(start))

	cl := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, cl, "corp@example.test", "corp-secret")
	if sel, err := cl.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != n {
		t.Fatalf("select: %+v %v", sel, err)
	}
	start = time.Now()
	msgs, err := cl.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, Envelope: true, UID: true}).Collect()
	if err != nil {
		t.Fatalf("FETCH 1:* (FLAGS ENVELOPE): %v", err)
	}
	t.Logf("FETCH 1:* (FLAGS ENVELOPE) of %d messages in %v", len(msgs), time.Since(start))
	if len(msgs) != n {
		t.Fatalf("FETCH returned %d messages, want %d", len(msgs), n)
	}
	seen := map[int]bool{}
	index := map[uint32]int{} // sequence number → message
	for k, m := range msgs {
		if m.SeqNum != uint32(k+1) || m.Envelope == nil {
			t.Fatalf("response %d: seq %d envelope %v", k, m.SeqNum, m.Envelope)
		}
		env := m.Envelope
		var i int
		if _, err := fmt.Sscanf(env.Subject, "quarterly figures %d", &i); err != nil || seen[i] {
			t.Fatalf("seq %d: subject %q (seen before: %v)", m.SeqNum, env.Subject, seen[i])
		}
		seen[i] = true
		want := 10 + i%11
		if len(env.To) != want/2 || len(env.Cc) != want-want/2 || env.MessageID != fmt.Sprintf("m%d@corp.example.com", i) ||
			len(env.From) != 1 || env.From[0].Name != fmt.Sprintf("Sender %d", i) {
			t.Fatalf("message %d: envelope %+v", i, env)
		}
		if a := env.Cc[len(env.Cc)-1]; a.Name != fmt.Sprintf("Colleague %d of %d", want-1, i) || a.Mailbox != fmt.Sprintf("p%d.m%d", want-1, i) || a.Host != "corp.example.com" {
			t.Fatalf("message %d: last Cc %+v", i, a)
		}
		if !env.Date.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)) {
			t.Fatalf("message %d: date %v", i, env.Date)
		}
		if len(storedFlags(m.Flags)) != 0 {
			t.Fatalf("message %d: flags %v", i, m.Flags)
		}
		index[m.SeqNum] = i
	}

	// SEARCH on sizes reads every index entry, window by window.
	threshold := len(corporateMessage(15)) // as many recipients as 15: half are larger
	var want []uint32
	for seq := uint32(1); seq <= n; seq++ {
		if len(corporateMessage(index[seq])) > threshold {
			want = append(want, seq)
		}
	}
	found, err := cl.Search(&imap.SearchCriteria{Larger: int64(threshold)}, nil).Wait()
	if err != nil {
		t.Fatalf("SEARCH LARGER: %v", err)
	}
	if got := found.AllSeqNums(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("SEARCH LARGER %d: %d matches, want %d", threshold, len(got), len(want))
	}

	// A non-PEEK FETCH across a window boundary sets \Seen on each message
	// before its response shows it.
	read, err := cl.Fetch(imap.SeqSet{imap.SeqRange{Start: 490, Stop: 1010}}, &imap.FetchOptions{
		BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}}},
	}).Collect()
	if err != nil || len(read) != 521 {
		t.Fatalf("FETCH 490:1010 BODY[HEADER.FIELDS (SUBJECT)]: %d messages, %v", len(read), err)
	}
	for _, m := range read {
		if m.Flags = storedFlags(m.Flags); len(m.Flags) != 1 || m.Flags[0] != imap.FlagSeen || !strings.Contains(string(m.BodySection[0].Bytes), fmt.Sprintf("quarterly figures %d\r\n", index[m.SeqNum])) {
			t.Fatalf("seq %d: flags %v, %q", m.SeqNum, m.Flags, m.BodySection[0].Bytes)
		}
	}
	found, err = cl.Search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil || found.All.String() != "490:1010" {
		t.Fatalf("SEARCH SEEN: %v %v", found.All, err)
	}
}

// attachmentMessage is a small multipart message, so that BODYSTRUCTURE
// reads it whole.
func attachmentMessage(i int) []byte {
	return []byte(fmt.Sprintf("From: a%d@example.org\r\nTo: race@example.test\r\nSubject: race %d\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n"+
		"--B\r\nContent-Type: text/plain\r\n\r\ntext %d\r\n"+
		"--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n%s\r\n--B--\r\n",
		i, i, i, strings.Repeat("QUJDRA==", 500)))
}

// A FETCH that reads bodies while another session expunges most of the
// messages finishes (OK or NO) and leaves the connection usable. It used to
// hang: a message gone between its metadata and its body left the FETCH
// response writer, and with it the connection's write lock, held.
func TestIMAPFetchWhileExpunged(t *testing.T) {
	const n = 400
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("race@example.test", "race-secret")
	start := time.Now()
	deliverMany(t, c, "race@example.test", n, attachmentMessage)
	t.Logf("delivered %d messages in %v", n, time.Since(start))

	a := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, a, "race@example.test", "race-secret")
	b := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, b, "race@example.test", "race-secret")
	for _, cl := range []*imapclient.Client{a, b} {
		if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	fetch := a.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Peek: true}},
	})
	first := fetch.Next()
	if first == nil {
		t.Fatalf("FETCH returned nothing: %v", fetch.Close())
	}
	if _, err := first.Collect(); err != nil {
		t.Fatal(err)
	}
	// A has started; B expunges all but the first ten while A goes on.
	if err := b.Store(imap.SeqSet{imap.SeqRange{Start: 11, Stop: n}}, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Expunge().Close(); err != nil {
		t.Fatal(err)
	}

	type result struct {
		got int
		err error
	}
	done := make(chan result, 1)
	go func() {
		got := 1
		for m := fetch.Next(); m != nil; m = fetch.Next() {
			buf, err := m.Collect()
			if err != nil {
				done <- result{got, err}
				return
			}
			if buf.BodyStructure == nil && len(buf.BodySection) == 0 {
				continue // an unsolicited flag update (B's \Deleted)
			}
			if buf.BodyStructure == nil || len(buf.BodySection) != 1 || !strings.Contains(string(buf.BodySection[0].Bytes), "Subject: race ") {
				done <- result{got, fmt.Errorf("seq %d: incomplete response %+v", buf.SeqNum, buf)}
				return
			}
			got++
		}
		done <- result{got, fetch.Close()}
	}()
	select {
	case r := <-done:
		// OK, or a NO that says why: either way the command has ended.
		if r.err != nil && !strings.Contains(r.err.Error(), "NO") {
			t.Fatalf("FETCH after %d messages: %v", r.got, r.err)
		}
		t.Logf("FETCH returned %d of %d messages (%v)", r.got, n, r.err)
	case <-time.After(60 * time.Second):
		t.Fatal("FETCH did not finish within 60 s of the expunge")
	}
	noop := make(chan error, 1)
	go func() { noop <- a.Noop().Wait() }()
	select {
	case err := <-noop:
		if err != nil {
			t.Fatalf("NOOP after the FETCH: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("NOOP after the FETCH did not answer within 10 s")
	}
}
