package e2e

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/test/cluster"
)

// The big-mailbox SORT and THREAD checks: message i (UID i+1) of n is in
// thread i/5 at depth i%5 (References name every earlier message of its
// thread), and its Date is i*7919 mod n minutes after a base (7919 is
// prime to n, so every date differs and the date order is not the
// mailbox order).

const sortBigStride = 7919

func sortBigDate(i, n int) time.Time {
	return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i*sortBigStride%n) * time.Minute)
}

func sortBigMessage(i, n int) []byte {
	k, depth := i/5, i%5
	var b strings.Builder
	fmt.Fprintf(&b, "From: s%d@big.example\r\nTo: r@big.example\r\nDate: %s\r\nMessage-ID: <m%d@big.example>\r\n",
		i%13, sortBigDate(i, n).Format(time.RFC1123Z), i)
	if depth > 0 {
		var refs []string
		for j := 5 * k; j < i; j++ {
			refs = append(refs, fmt.Sprintf("<m%d@big.example>", j))
		}
		fmt.Fprintf(&b, "In-Reply-To: <m%d@big.example>\r\nReferences: %s\r\nSubject: Re: topic %d\r\n", i-1, strings.Join(refs, " "), k)
	} else {
		fmt.Fprintf(&b, "Subject: topic %d\r\n", k)
	}
	fmt.Fprintf(&b, "\r\nmessage %d\r\n", i)
	return []byte(b.String())
}

// sortBigFill appends the n messages to the account's INBOX on 8
// AppendMessages streams at a time, 2 500 messages each (one index change
// per stream; the UIDs of a stream are consecutive, the streams' order is
// not known), and returns each message's sequence number.
func sortBigFill(tb testing.TB, c *cluster.Cluster, accountID string, n int) []int {
	tb.Helper()
	const streams, perStream = 8, 2500
	uidOf := make([]uint32, n)
	next := make(chan int, n/perStream+1)
	for start := 0; start < n; start += perStream {
		next <- start
	}
	close(next)
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := range next {
				if err := sortBigAppend(c, accountID, n, start, min(n, start+perStream), uidOf); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(uidOf[a], uidOf[b]) })
	seqOf := make([]int, n)
	for k, i := range order {
		seqOf[i] = k + 1
	}
	return seqOf
}

// sortBigAppend appends messages start to end-1 on one stream.
func sortBigAppend(c *cluster.Cluster, accountID string, n, start, end int, uidOf []uint32) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	stream, err := c.Messages.AppendMessages(ctx)
	if err != nil {
		return err
	}
	send := func(r *storagev1.AppendMessagesRequest) error {
		if err := stream.Send(r); err != nil {
			_, err = stream.CloseAndRecv()
			return fmt.Errorf("append stream: %w", err)
		}
		return nil
	}
	err = send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Target_{
		Target: &storagev1.AppendMessagesRequest_Target{AccountId: accountID, MailboxName: "INBOX"}}})
	for i := start; i < end && err == nil; i++ {
		msg := sortBigMessage(i, n)
		if err = send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Start_{
			Start: &storagev1.AppendMessagesRequest_Start{SizeHint: uint64(len(msg))}}}); err == nil {
			err = send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Chunk{
				Chunk: &storagev1.BodyChunk{Data: msg}}})
		}
	}
	if err != nil {
		return err
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("AppendMessages: %w", err)
	}
	if len(resp.Uids) != end-start {
		return fmt.Errorf("AppendMessages: %d UIDs for %d messages", len(resp.Uids), end-start)
	}
	for k, uid := range resp.Uids {
		uidOf[start+k] = uid
	}
	return nil
}

// sortBigExpected returns the expected "* SORT" line of SORT (DATE) and
// "* THREAD" line of THREAD REFERENCES.
func sortBigExpected(seqOf []int) (sortLine, threadLine string) {
	n := len(seqOf)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return sortBigDate(a, n).Compare(sortBigDate(b, n)) })
	var s strings.Builder
	s.WriteString("* SORT")
	for _, i := range order {
		s.WriteString(" " + strconv.Itoa(seqOf[i]))
	}
	// Each thread is a chain (each message's parent is the one before);
	// threads in the order of their first messages' dates (n not a
	// multiple of 5 only shortens the last thread).
	var th strings.Builder
	th.WriteString("* THREAD ")
	for _, i := range order {
		if i%5 != 0 {
			continue
		}
		th.WriteString("(")
		for j := i; j < min(n, i+5); j++ {
			if j > i {
				th.WriteString(" ")
			}
			th.WriteString(strconv.Itoa(seqOf[j]))
		}
		th.WriteString(")")
	}
	return s.String(), th.String()
}

// bigConn is a raw IMAP connection for the big mailbox, with no bound
// shorter than minutes on an answer (testing.TB: tests and benchmarks).
type bigConn struct {
	tb   testing.TB
	conn net.Conn
	r    *bufio.Reader
	n    int
}

func bigDial(tb testing.TB, addr string) *bigConn {
	tb.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	c := &bigConn{tb: tb, conn: conn, r: bufio.NewReader(conn)}
	if l := c.line(); !strings.HasPrefix(l, "* OK") {
		tb.Fatalf("greeting %q", l)
	}
	return c
}

func (c *bigConn) line() string {
	c.tb.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Minute))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.tb.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// do runs cmd, checks that it ends OK, and returns its untagged lines.
func (c *bigConn) do(cmd string) []string {
	c.tb.Helper()
	c.n++
	tag := fmt.Sprintf("t%d", c.n)
	fmt.Fprintf(c.conn, "%s %s\r\n", tag, cmd)
	var untagged []string
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				c.tb.Fatalf("%s: %q", cmd, l)
			}
			return untagged
		}
		untagged = append(untagged, l)
	}
}

// one runs cmd and returns its only untagged line.
func (c *bigConn) one(cmd string) string {
	c.tb.Helper()
	l := c.do(cmd)
	if len(l) != 1 {
		c.tb.Fatalf("%s: %d untagged lines", cmd, len(l))
	}
	return l[0]
}

func sortBigSetup(tb testing.TB, n int) (*cluster.Cluster, *bigConn, []int) {
	c := cluster.Start(tb, binDir, minioServer, cluster.Options{Access: 1})
	acc := c.CreateAccount("bigsort@example.test", "bigsort-secret")
	start := time.Now()
	seqOf := sortBigFill(tb, c, acc.Id, n)
	tb.Logf("appended %d messages in %v", n, time.Since(start))
	r := bigDial(tb, c.Access[0].IMAPS)
	r.do("LOGIN bigsort@example.test bigsort-secret")
	if l := r.do("EXAMINE INBOX"); !contains(l, fmt.Sprintf("* %d EXISTS", n)) {
		tb.Fatalf("EXAMINE: %q", l)
	}
	return c, r, seqOf
}

// SORT (DATE) and THREAD REFERENCES on a 20 000-message INBOX (RFC 5256
// section 3): both complete and equal the orders computed here; REVERSE
// DATE, and SORT of a sample (messages 101:200) too.
func TestIMAPSortThreadBigMailbox(t *testing.T) {
	const n = 20000
	_, r, seqOf := sortBigSetup(t, n)
	wantSort, wantThread := sortBigExpected(seqOf)
	if got := r.one("SORT (DATE) UTF-8 ALL"); got != wantSort {
		t.Errorf("SORT (DATE): %d octets, first %.80q; want %d octets, first %.80q", len(got), got, len(wantSort), wantSort)
	}
	got := strings.Fields(r.one("SORT (REVERSE DATE) UTF-8 ALL"))
	want := strings.Fields(wantSort)
	slices.Reverse(want[2:])
	if !slices.Equal(got, want) {
		t.Errorf("SORT (REVERSE DATE): %d numbers, first %q; want first %q", len(got)-2, got[:min(len(got), 6)], want[:6])
	}
	// A sample: sequence numbers 101:200, by date (SORT's numbers are
	// sequence numbers, so UIDs are not needed).
	var sample []string
	for _, f := range strings.Fields(wantSort)[2:] {
		if seq, _ := strconv.Atoi(f); seq >= 101 && seq <= 200 {
			sample = append(sample, f)
		}
	}
	if got := r.one("SORT (DATE) UTF-8 101:200"); got != "* SORT "+strings.Join(sample, " ") {
		t.Errorf("SORT (DATE) 101:200: %q", got)
	}
	if got := r.one("THREAD REFERENCES UTF-8 ALL"); got != wantThread {
		t.Errorf("THREAD REFERENCES: %d octets, first %.80q; want %d octets, first %.80q", len(got), got, len(wantThread), wantThread)
	}
}

// BenchmarkIMAPSortThread prints how long SORT and THREAD take on a big
// INBOX (MAILFLEET_BENCH_MESSAGES, default 100 000), each run once after
// the fill, with the access process's peak RSS during each; SORT (DATE)
// and THREAD REFERENCES are checked against the orders computed here, the
// times only printed.
//
//	go test -run '^$' -bench IMAPSortThread -benchtime 1x ./test/e2e/
func BenchmarkIMAPSortThread(b *testing.B) {
	n := benchMessages(b, 100000)
	for range b.N {
		c, r, seqOf := sortBigSetup(b, n)
		wantSort, wantThread := sortBigExpected(seqOf)
		pid := bmbAccessPID(b, c)
		timed := func(name, cmd string) string {
			stop := bmbSampleRSS(pid)
			start := time.Now()
			l := r.one(cmd)
			took := time.Since(start)
			peak := stop()
			b.ReportMetric(took.Seconds(), "s-"+name)
			b.ReportMetric(float64(peak)/1024, "MiB-access-peakRSS-"+name)
			fmt.Printf("  %-36s %d messages: %v, access peak RSS %d MiB (%d octets)\n", cmd, n, took, peak/1024, len(l))
			return l
		}
		if timed("sort-date", "SORT (DATE) UTF-8 ALL") != wantSort {
			b.Error("SORT (DATE) differs from the expected order")
		}
		timed("sort-subject", "SORT (SUBJECT) UTF-8 ALL")
		timed("sort-from-reverse-size", "SORT (FROM REVERSE SIZE) UTF-8 ALL")
		if timed("thread-references", "THREAD REFERENCES UTF-8 ALL") != wantThread {
			b.Error("THREAD REFERENCES differs from the expected threads")
		}
		timed("thread-orderedsubject", "THREAD ORDEREDSUBJECT UTF-8 ALL")
	}
}

// benchMessages is the number of messages of a big-mailbox benchmark:
// MAILFLEET_BENCH_MESSAGES, or def.
func benchMessages(b *testing.B, def int) int {
	s := os.Getenv("MAILFLEET_BENCH_MESSAGES")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 10 {
		b.Fatalf("MAILFLEET_BENCH_MESSAGES=%q: want an integer ≥ 10", s)
	}
	return n
}
