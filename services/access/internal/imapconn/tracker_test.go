package imapconn

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// logSink records the updates written, as text.
type logSink struct {
	mu  sync.Mutex
	out []string
	err error // returned by every write when set
}

func (l *logSink) add(s string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.out = append(l.out, s)
	return l.err
}

func (l *logSink) WriteExpunge(n uint32) error { return l.add(fmt.Sprintf("%d EXPUNGE", n)) }
func (l *logSink) WriteNumMessages(n uint32) error {
	return l.add(fmt.Sprintf("%d EXISTS", n))
}
func (l *logSink) WriteMailboxFlags(flags []imap.Flag) error {
	return l.add(fmt.Sprintf("FLAGS %v", flags))
}
func (l *logSink) WriteMessageFlags(n uint32, uid imap.UID, flags []imap.Flag, modSeq uint64) error {
	return l.add(fmt.Sprintf("%d FETCH UID %d FLAGS %v MODSEQ %d", n, uid, flags, modSeq))
}

func (l *logSink) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.out
	l.out = nil
	return out
}

func trPoll(t *testing.T, s *SessionTracker, allowExpunge bool) []string {
	t.Helper()
	var l logSink
	if err := s.Poll(&l, allowExpunge); err != nil {
		t.Fatal(err)
	}
	return l.take()
}

func wantLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("wrote\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func wantNums(t *testing.T, name string, f func(uint32) uint32, want ...uint32) {
	t.Helper()
	for i, w := range want {
		if got := f(uint32(i)); got != w {
			t.Errorf("%s(%d) = %d, want %d", name, i, got, w)
		}
	}
}

func trFlags(s ...string) []imap.Flag {
	out := []imap.Flag{}
	for _, f := range s {
		out = append(out, imap.Flag(f))
	}
	return out
}

// RFC 3501 7.4.1 / RFC 9051 7.5.1: no EXPUNGE while no command is in
// progress nor during FETCH, STORE or SEARCH. Until the session may be told,
// its numbering is the one the client knows.
func TestTrackerUnpolledSessionKeepsNumbering(t *testing.T) {
	mb := NewMailboxTracker(5)
	s := mb.NewSession()
	defer s.Close()
	mb.QueueExpunge(2)

	if n := s.NumMessages(); n != 5 {
		t.Fatalf("NumMessages = %d, want 5", n)
	}
	// Mailbox 1..4 are the session's 1,3,4,5.
	wantNums(t, "EncodeSeqNum", s.EncodeSeqNum, 0, 1, 3, 4, 5, 0)
	wantNums(t, "DecodeSeqNum", s.DecodeSeqNum, 0, 1, 0, 2, 3, 4, 0)

	wantLines(t, trPoll(t, s, false)) // during FETCH/STORE/SEARCH: nothing to say
	if n := s.NumMessages(); n != 5 {
		t.Fatalf("NumMessages after Poll(false) = %d, want 5", n)
	}
	wantLines(t, trPoll(t, s, true), "2 EXPUNGE")
	if n := s.NumMessages(); n != 4 {
		t.Fatalf("NumMessages after Poll(true) = %d, want 4", n)
	}
	wantNums(t, "EncodeSeqNum", s.EncodeSeqNum, 0, 1, 2, 3, 4, 0)
	wantNums(t, "DecodeSeqNum", s.DecodeSeqNum, 0, 1, 2, 3, 4, 0)
	wantLines(t, trPoll(t, s, true))
}

// The same three messages expunged back to front and front to back (each
// QueueExpunge in the mailbox's numbering of the moment) leave the same
// pending positions; they are written highest first so that each number is
// the one the client knows.
func TestTrackerExpungeOrders(t *testing.T) {
	for name, seqs := range map[string][]uint32{
		"descending": {9, 5, 2},
		"ascending":  {2, 4, 7}, // the original 2, 5, 9
	} {
		t.Run(name, func(t *testing.T) {
			mb := NewMailboxTracker(10)
			s := mb.NewSession()
			defer s.Close()
			for _, n := range seqs {
				mb.QueueExpunge(n)
			}
			wantNums(t, "EncodeSeqNum", s.EncodeSeqNum, 0, 1, 3, 4, 6, 7, 8, 10, 0)
			wantNums(t, "DecodeSeqNum", s.DecodeSeqNum, 0, 1, 0, 2, 3, 0, 4, 5, 6, 0, 7, 0)
			wantLines(t, trPoll(t, s, true), "9 EXPUNGE", "5 EXPUNGE", "2 EXPUNGE")
			if n := s.NumMessages(); n != 7 {
				t.Fatalf("NumMessages = %d, want 7", n)
			}
		})
	}
}

func TestTrackerExpungeThenExists(t *testing.T) {
	t.Run("allowed", func(t *testing.T) {
		mb := NewMailboxTracker(3)
		s := mb.NewSession()
		defer s.Close()
		mb.QueueExpunge(1)
		mb.QueueNumMessages(4) // two arrivals
		wantLines(t, trPoll(t, s, true), "1 EXPUNGE", "4 EXISTS")
		wantNums(t, "EncodeSeqNum", s.EncodeSeqNum, 0, 1, 2, 3, 4, 0)
	})
	t.Run("deferred", func(t *testing.T) {
		mb := NewMailboxTracker(3)
		s := mb.NewSession()
		defer s.Close()
		mb.QueueExpunge(1)
		mb.QueueNumMessages(4)
		// New messages are not visible until announced.
		wantNums(t, "EncodeSeqNum", s.EncodeSeqNum, 0, 2, 3, 0, 0)
		// During a FETCH: EXISTS may go, counting the expunged message
		// the client still has.
		wantLines(t, trPoll(t, s, false), "5 EXISTS")
		wantNums(t, "EncodeSeqNum", s.EncodeSeqNum, 0, 2, 3, 4, 5, 0)
		wantNums(t, "DecodeSeqNum", s.DecodeSeqNum, 0, 0, 1, 2, 3, 4, 0)
		wantLines(t, trPoll(t, s, true), "1 EXPUNGE")
		if n := s.NumMessages(); n != 4 {
			t.Fatalf("NumMessages = %d, want 4", n)
		}
	})
	t.Run("arrived and gone unseen", func(t *testing.T) {
		mb := NewMailboxTracker(2)
		s := mb.NewSession()
		defer s.Close()
		mb.QueueNumMessages(4)
		mb.QueueMessageFlags(4, 14, trFlags(`\Seen`), 0, nil)
		mb.QueueExpunge(4)
		mb.QueueExpunge(3)
		wantLines(t, trPoll(t, s, true))
		mb.QueueNumMessages(3)
		mb.QueueMessageFlags(3, 15, trFlags(`\Seen`), 0, nil) // the client will FETCH it
		wantLines(t, trPoll(t, s, true), "3 EXISTS")
	})
}

func TestTrackerFlagsThenExpunge(t *testing.T) {
	mb := NewMailboxTracker(4)
	s := mb.NewSession()
	defer s.Close()
	mb.QueueMessageFlags(2, 12, trFlags(`\Seen`), 7, nil)
	mb.QueueMessageFlags(3, 13, trFlags(`\Seen`), 8, nil)
	mb.QueueExpunge(2) // the message just changed: its FETCH is dropped
	mb.QueueMessageFlags(1, 11, trFlags(`\Flagged`), 9, nil)
	mb.QueueMessageFlags(2, 13, trFlags(`\Seen`, `\Flagged`), 10, nil) // was 3: coalesces
	// During a STORE: FETCHes in the numbering the client knows, no EXPUNGE.
	wantLines(t, trPoll(t, s, false),
		"1 FETCH UID 11 FLAGS [\\Flagged] MODSEQ 9",
		"3 FETCH UID 13 FLAGS [\\Seen \\Flagged] MODSEQ 10")
	mb.QueueMessageFlags(2, 13, trFlags(), 11, nil)
	mb.QueueExpunge(1)
	wantLines(t, trPoll(t, s, true),
		"3 FETCH UID 13 FLAGS [] MODSEQ 11",
		"2 EXPUNGE",
		"1 EXPUNGE")
}

func TestTrackerSource(t *testing.T) {
	mb := NewMailboxTracker(3)
	a, b := mb.NewSession(), mb.NewSession()
	defer a.Close()
	defer b.Close()

	// A's own STORE: A's command reports it (or was .SILENT); B hears of it.
	mb.QueueMessageFlags(1, 1, trFlags(`\Seen`), 0, a)
	wantLines(t, trPoll(t, a, true))
	wantLines(t, trPoll(t, b, true), "1 FETCH UID 1 FLAGS [\\Seen] MODSEQ 0")

	// B changes message 2, then A changes it before polling: A's pending
	// FETCH is not left stale, it carries A's result.
	mb.QueueMessageFlags(2, 2, trFlags(`\Seen`), 5, b)
	mb.QueueMessageFlags(2, 2, trFlags(`\Seen`, `\Flagged`), 6, a)
	wantLines(t, trPoll(t, a, true), "2 FETCH UID 2 FLAGS [\\Seen \\Flagged] MODSEQ 6")
	wantLines(t, trPoll(t, b, true), "2 FETCH UID 2 FLAGS [\\Seen \\Flagged] MODSEQ 6")

	// The source's numbering is respected too.
	mb.QueueExpunge(1)
	mb.QueueMessageFlags(2, 3, trFlags(`$x`), 0, nil)
	mb.QueueMessageFlags(2, 3, trFlags(`$y`), 0, a)
	wantLines(t, trPoll(t, a, false), "3 FETCH UID 3 FLAGS [$y] MODSEQ 0")
}

func TestTrackerMailboxFlags(t *testing.T) {
	mb := NewMailboxTracker(1)
	s := mb.NewSession()
	defer s.Close()
	mb.QueueMailboxFlags(trFlags(`\Seen`, `$a`))
	mb.QueueMessageFlags(1, 1, trFlags(`$b`), 0, nil)
	mb.QueueMailboxFlags(trFlags(`\Seen`, `$a`, `$b`))
	mb.QueueExpunge(1)
	// FLAGS first so that a FETCH never shows a keyword the client has not
	// been told of; only the latest list.
	wantLines(t, trPoll(t, s, false), "FLAGS [\\Seen $a $b]")
	wantLines(t, trPoll(t, s, true), "1 EXPUNGE")
	mb.QueueMailboxFlags(nil)
	wantLines(t, trPoll(t, s, true), "FLAGS []")
}

func TestTrackerSessionsIndependent(t *testing.T) {
	mb := NewMailboxTracker(3)
	a := mb.NewSession()
	defer a.Close()
	mb.QueueExpunge(3)
	b := mb.NewSession() // selected after: sees 2 messages
	defer b.Close()
	mb.QueueExpunge(1)
	if a.NumMessages() != 3 || b.NumMessages() != 2 {
		t.Fatalf("NumMessages = %d, %d; want 3, 2", a.NumMessages(), b.NumMessages())
	}
	wantLines(t, trPoll(t, b, true), "1 EXPUNGE")
	wantLines(t, trPoll(t, a, true), "3 EXPUNGE", "1 EXPUNGE")
}

func TestTrackerClose(t *testing.T) {
	mb := NewMailboxTracker(2)
	s := mb.NewSession()
	mb.QueueExpunge(1)
	s.Close()
	s.Close()
	mb.QueueExpunge(1)
	wantLines(t, trPoll(t, s, true))
	if len(mb.sessions) != 0 {
		t.Fatal("closed session still registered")
	}
	if err := s.Idle(&logSink{}, make(chan struct{})); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("Idle after Close = %v", err)
	}
}

func TestTrackerInvalidPanics(t *testing.T) {
	for name, f := range map[string]func(*MailboxTracker){
		"expunge 0":        func(mb *MailboxTracker) { mb.QueueExpunge(0) },
		"expunge beyond":   func(mb *MailboxTracker) { mb.QueueExpunge(3) },
		"count going down": func(mb *MailboxTracker) { mb.QueueNumMessages(1) },
		"flags beyond":     func(mb *MailboxTracker) { mb.QueueMessageFlags(3, 1, nil, 0, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f(NewMailboxTracker(2))
		})
	}
}

func TestTrackerSinkError(t *testing.T) {
	mb := NewMailboxTracker(2)
	s := mb.NewSession()
	defer s.Close()
	mb.QueueExpunge(1)
	boom := errors.New("boom")
	if err := s.Poll(&logSink{err: boom}, true); err != boom {
		t.Fatalf("Poll = %v, want the sink's error", err)
	}
	mb.QueueExpunge(1)
	if err := s.Idle(&logSink{err: boom}, make(chan struct{})); err != boom {
		t.Fatalf("Idle = %v, want the sink's error", err)
	}
}

// A session that does not poll while changes flood in holds one entry per
// message, not per change, and a big mailbox emptied in any order stays
// cheap.
func TestTrackerFlood(t *testing.T) {
	const msgs = 1000
	mb := NewMailboxTracker(msgs)
	s := mb.NewSession()
	defer s.Close()
	for i := range 100000 {
		seq := uint32(i%msgs + 1)
		mb.QueueMessageFlags(seq, imap.UID(seq), trFlags(fmt.Sprint("$k", i)), uint64(i+1), nil)
	}
	if n := len(s.flags); n != msgs {
		t.Fatalf("%d pending FETCHes, want %d", n, msgs)
	}
	out := trPoll(t, s, true)
	if len(out) != msgs || out[0] != fmt.Sprintf("1 FETCH UID 1 FLAGS [$k%d] MODSEQ %d", 99000, 99001) {
		t.Fatalf("%d lines, first %q", len(out), out[0])
	}

	for _, order := range []string{"front", "back", "random"} {
		const big = 100000
		mb := NewMailboxTracker(big)
		s := mb.NewSession()
		start := time.Now()
		r := rand.New(rand.NewPCG(1, 2))
		for n := uint32(big); n > 0; n-- {
			switch order {
			case "front":
				mb.QueueExpunge(1)
			case "back":
				mb.QueueExpunge(n)
			default:
				mb.QueueExpunge(r.Uint32N(n) + 1)
			}
			if n%1000 == 0 {
				s.EncodeSeqNum(n / 2)
				s.DecodeSeqNum(n)
			}
		}
		count := countSink{n: big, allowExpunge: true}
		if err := s.Poll(&count, true); err != nil {
			t.Fatal(err)
		}
		if count.n != 0 || s.NumMessages() != 0 {
			t.Fatalf("%s: %d left", order, count.n)
		}
		s.Close()
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("emptying %d messages from the %s took %v", big, order, d)
		}
	}
}

// countSink checks sequence numbers against a count only.
type countSink struct {
	n            uint32
	allowExpunge bool
	err          error
}

func (c *countSink) fail(format string, args ...any) error {
	if c.err == nil {
		c.err = fmt.Errorf(format, args...)
	}
	return c.err
}

func (c *countSink) WriteExpunge(n uint32) error {
	if !c.allowExpunge {
		return c.fail("EXPUNGE %d while expunges are not allowed", n)
	}
	if n == 0 || n > c.n {
		return c.fail("EXPUNGE %d with %d messages", n, c.n)
	}
	c.n--
	return nil
}

func (c *countSink) WriteNumMessages(n uint32) error {
	if n <= c.n {
		return c.fail("EXISTS %d with %d messages", n, c.n)
	}
	c.n = n
	return nil
}

func (c *countSink) WriteMailboxFlags([]imap.Flag) error { return nil }

func (c *countSink) WriteMessageFlags(n uint32, _ imap.UID, _ []imap.Flag, _ uint64) error {
	if n == 0 || n > c.n {
		return c.fail("FETCH %d with %d messages", n, c.n)
	}
	return nil
}

// The model test: a reference mailbox (UIDs with flags) and clients that
// apply what they are written to their own view, checked after every step.

type modelMailbox struct {
	uids      []imap.UID
	flags     map[imap.UID]imap.Flag
	modSeq    map[imap.UID]uint64
	nextUID   imap.UID
	modSeqCtr uint64
	mbFlags   string
}

func (m *modelMailbox) index(uid imap.UID) int {
	i, ok := slices.BinarySearch(m.uids, uid)
	if !ok {
		return -1
	}
	return i
}

// modelClient is one session as its client sees it.
type modelClient struct {
	t            *testing.T
	mb           *modelMailbox
	tr           *SessionTracker
	view         []imap.UID
	known        map[imap.UID]imap.Flag
	announced    imap.UID // highest UID the mailbox had when last announced
	mbFlags      string
	allowExpunge bool
	err          error
}

func (c *modelClient) fail(format string, args ...any) error {
	if c.err == nil {
		c.err = fmt.Errorf(format, args...)
	}
	return c.err
}

func (c *modelClient) WriteExpunge(n uint32) error {
	if !c.allowExpunge {
		return c.fail("EXPUNGE %d while expunges are not allowed", n)
	}
	if n == 0 || int(n) > len(c.view) {
		return c.fail("EXPUNGE %d with %d messages", n, len(c.view))
	}
	uid := c.view[n-1]
	if c.mb.index(uid) >= 0 {
		return c.fail("EXPUNGE %d of UID %d, which is still there", n, uid)
	}
	c.view = slices.Delete(c.view, int(n-1), int(n))
	delete(c.known, uid)
	return nil
}

func (c *modelClient) WriteNumMessages(n uint32) error {
	if int(n) <= len(c.view) {
		return c.fail("EXISTS %d with %d messages", n, len(c.view))
	}
	var fresh []imap.UID
	for _, uid := range c.mb.uids {
		if uid > c.announced {
			fresh = append(fresh, uid)
		}
	}
	if int(n)-len(c.view) != len(fresh) {
		return c.fail("EXISTS %d with %d messages: %d new ones, not %d", n, len(c.view), len(fresh), int(n)-len(c.view))
	}
	for _, uid := range fresh {
		c.view = append(c.view, uid)
		c.known[uid] = c.mb.flags[uid] // the client fetches new messages
	}
	c.announced = c.mb.nextUID - 1
	return nil
}

func (c *modelClient) WriteMailboxFlags(flags []imap.Flag) error {
	got := fmt.Sprint(flags)
	if got != c.mb.mbFlags {
		return c.fail("FLAGS %s, mailbox has %s", got, c.mb.mbFlags)
	}
	c.mbFlags = got
	return nil
}

func (c *modelClient) WriteMessageFlags(n uint32, uid imap.UID, flags []imap.Flag, modSeq uint64) error {
	if n == 0 || int(n) > len(c.view) {
		return c.fail("FETCH %d with %d messages", n, len(c.view))
	}
	if c.view[n-1] != uid {
		return c.fail("FETCH %d UID %d, but %d is UID %d", n, uid, n, c.view[n-1])
	}
	if c.mb.index(uid) < 0 {
		return c.fail("FETCH %d UID %d of an expunged message", n, uid)
	}
	if len(flags) != 1 || flags[0] != c.mb.flags[uid] || modSeq != c.mb.modSeq[uid] {
		return c.fail("FETCH %d UID %d FLAGS %v MODSEQ %d: stale, latest is %s %d", n, uid, flags, modSeq, c.mb.flags[uid], c.mb.modSeq[uid])
	}
	c.known[uid] = flags[0]
	return nil
}

func newModelClient(t *testing.T, mb *modelMailbox, tracker *MailboxTracker) *modelClient {
	c := &modelClient{t: t, mb: mb, tr: tracker.NewSession(), known: map[imap.UID]imap.Flag{},
		announced: mb.nextUID - 1, mbFlags: mb.mbFlags}
	c.view = slices.Clone(mb.uids)
	for _, uid := range mb.uids {
		c.known[uid] = mb.flags[uid]
	}
	return c
}

func (c *modelClient) poll(allowExpunge bool) {
	t := c.t
	t.Helper()
	prev := slices.Clone(c.view)
	c.allowExpunge = allowExpunge
	if err := c.tr.Poll(c, allowExpunge); err != nil {
		t.Fatalf("Poll(%v): %v", allowExpunge, err)
	}
	if c.err != nil {
		t.Fatalf("Poll(%v): %v", allowExpunge, c.err)
	}
	want := c.mb.uids
	if !allowExpunge {
		// The view stays, plus every arrival.
		want = slices.Clone(prev)
		for _, uid := range c.mb.uids {
			if !slices.Contains(prev, uid) {
				want = append(want, uid)
			}
		}
	}
	if !slices.Equal(c.view, want) {
		t.Fatalf("Poll(%v): view %v, want %v (mailbox %v, before %v)", allowExpunge, c.view, want, c.mb.uids, prev)
	}
	for _, uid := range c.view {
		if c.mb.index(uid) >= 0 && c.known[uid] != c.mb.flags[uid] {
			t.Fatalf("Poll(%v): client has UID %d as %s, mailbox %s", allowExpunge, uid, c.known[uid], c.mb.flags[uid])
		}
	}
	if c.mbFlags != c.mb.mbFlags {
		t.Fatalf("Poll(%v): client has FLAGS %s, mailbox %s", allowExpunge, c.mbFlags, c.mb.mbFlags)
	}
}

// check compares the tracker's numbering with the client's view.
func (c *modelClient) check() {
	t := c.t
	t.Helper()
	inView := map[imap.UID]uint32{}
	for i, uid := range c.view {
		inView[uid] = uint32(i + 1)
	}
	for i, uid := range c.mb.uids {
		if got, want := c.tr.EncodeSeqNum(uint32(i+1)), inView[uid]; got != want {
			t.Fatalf("EncodeSeqNum(%d) = %d, want %d (mailbox %v, view %v)", i+1, got, want, c.mb.uids, c.view)
		}
	}
	for i, uid := range c.view {
		want := uint32(c.mb.index(uid) + 1)
		if got := c.tr.DecodeSeqNum(uint32(i + 1)); got != want {
			t.Fatalf("DecodeSeqNum(%d) = %d, want %d (mailbox %v, view %v)", i+1, got, want, c.mb.uids, c.view)
		}
		if want != 0 {
			if back := c.tr.EncodeSeqNum(want); back != uint32(i+1) {
				t.Fatalf("EncodeSeqNum(DecodeSeqNum(%d)) = %d", i+1, back)
			}
		}
	}
	n := uint32(len(c.view))
	if c.tr.NumMessages() != n {
		t.Fatalf("NumMessages = %d, want %d", c.tr.NumMessages(), n)
	}
	if c.tr.DecodeSeqNum(0) != 0 || c.tr.DecodeSeqNum(n+1) != 0 || c.tr.EncodeSeqNum(0) != 0 ||
		c.tr.EncodeSeqNum(uint32(len(c.mb.uids)+1)) != 0 {
		t.Fatal("out of range numbers map to something")
	}
}

func TestTrackerModel(t *testing.T) {
	steps := 10000
	if testing.Short() {
		steps = 3000
	}
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runModel(t, seed, steps) })
	}
}

func runModel(t *testing.T, seed uint64, steps int) {
	r := rand.New(rand.NewPCG(seed, 99))
	mb := &modelMailbox{flags: map[imap.UID]imap.Flag{}, modSeq: map[imap.UID]uint64{}, nextUID: 1, mbFlags: "[]"}
	tracker := NewMailboxTracker(0)
	newFlag := func() imap.Flag { mb.modSeqCtr++; return imap.Flag(fmt.Sprint("$v", mb.modSeqCtr)) }
	appendMsgs := func(k int) {
		for range k {
			uid := mb.nextUID
			mb.nextUID++
			mb.uids = append(mb.uids, uid)
			mb.flags[uid] = newFlag()
			mb.modSeq[uid] = mb.modSeqCtr
		}
		tracker.QueueNumMessages(uint32(len(mb.uids)))
	}
	appendMsgs(r.IntN(20))
	clients := make([]*modelClient, 4)
	for i := range clients {
		clients[i] = newModelClient(t, mb, tracker)
	}
	expunge := func(i int) {
		uid := mb.uids[i]
		mb.uids = slices.Delete(mb.uids, i, i+1)
		delete(mb.flags, uid)
		delete(mb.modSeq, uid)
		tracker.QueueExpunge(uint32(i + 1))
	}
	for step := range steps {
		size := len(mb.uids)
		switch op := r.IntN(100); {
		case op < 12 && size < 60:
			appendMsgs(1 + r.IntN(3))
		case op < 20 && size > 0:
			expunge(r.IntN(size))
		case op < 24 && size > 0:
			// A run, as one EXPUNGE command would: positions chosen up
			// front, removed back to front or front to back.
			var pos []int
			for i := range size {
				if r.IntN(3) == 0 {
					pos = append(pos, i)
				}
			}
			if r.IntN(2) == 0 {
				for k, p := range pos {
					expunge(p - k)
				}
			} else {
				for _, p := range slices.Backward(pos) {
					expunge(p)
				}
			}
		case op < 45 && size > 0:
			i := r.IntN(size)
			uid := mb.uids[i]
			f := newFlag()
			mb.flags[uid], mb.modSeq[uid] = f, mb.modSeqCtr
			var source *SessionTracker
			if k := r.IntN(len(clients) + 2); k < len(clients) {
				c := clients[k]
				if _, ok := c.known[uid]; ok {
					source = c.tr
					c.known[uid] = f // its command's response tells it
				}
			}
			tracker.QueueMessageFlags(uint32(i+1), uid, []imap.Flag{f}, mb.modSeqCtr, source)
		case op < 48:
			flags := []imap.Flag{`\Seen`, imap.Flag(fmt.Sprint("$kw", step))}
			mb.mbFlags = fmt.Sprint(flags)
			tracker.QueueMailboxFlags(flags)
		case op < 50:
			k := r.IntN(len(clients))
			clients[k].tr.Close()
			clients[k] = newModelClient(t, mb, tracker)
		default:
			clients[r.IntN(len(clients))].poll(r.IntN(3) != 0)
		}
		for _, c := range clients {
			c.check()
		}
	}
	for _, c := range clients {
		c.poll(true)
		c.check()
		c.tr.Close()
	}
}

// Concurrency: a feeder and sessions that poll, idle and map numbers, all at
// once; at the end every session's count agrees with the mailbox.
func TestTrackerConcurrent(t *testing.T) {
	before := runtime.NumGoroutine()
	mb := NewMailboxTracker(10)
	const sessions = 6
	var wg sync.WaitGroup
	done := make(chan struct{})
	var fmu sync.Mutex // the feeder's count
	count := uint32(10)
	trackers := make([]*SessionTracker, sessions)
	sinks := make([]*countSink, sessions)
	for i := range sessions {
		trackers[i] = mb.NewSession()
		sinks[i] = &countSink{n: 10}
	}
	for i := range sessions {
		wg.Go(func() {
			s, c := trackers[i], sinks[i]
			r := rand.New(rand.NewPCG(uint64(i), 1))
			for {
				select {
				case <-done:
					return
				default:
				}
				switch r.IntN(4) {
				case 0:
					c.allowExpunge = false
					if err := s.Poll(c, false); err != nil {
						t.Error(err)
						return
					}
				case 1:
					c.allowExpunge = true
					if err := s.Poll(c, true); err != nil {
						t.Error(err)
						return
					}
				case 2:
					c.allowExpunge = true
					stop := make(chan struct{})
					time.AfterFunc(time.Duration(r.IntN(200))*time.Microsecond, func() { close(stop) })
					if err := s.Idle(c, stop); err != nil {
						t.Error(err)
						return
					}
				default:
					// Mapping a number and back is only stable while the
					// mailbox holds still: the caller's lock, as in imapd.
					fmu.Lock()
					for n := range s.NumMessages() + 2 {
						if d := s.DecodeSeqNum(n); d != 0 {
							if e := s.EncodeSeqNum(d); e != n {
								t.Errorf("EncodeSeqNum(DecodeSeqNum(%d)=%d) = %d", n, d, e)
							}
						}
					}
					fmu.Unlock()
				}
			}
		})
	}
	wg.Go(func() {
		r := rand.New(rand.NewPCG(7, 7))
		for i := range 20000 {
			fmu.Lock()
			switch op := r.IntN(10); {
			case op < 3 && count < 200:
				count += uint32(1 + r.IntN(3))
				mb.QueueNumMessages(count)
			case op < 6 && count > 0:
				mb.QueueExpunge(uint32(r.IntN(int(count))) + 1)
				count--
			case op < 9 && count > 0:
				seq := uint32(r.IntN(int(count))) + 1
				var src *SessionTracker
				if k := r.IntN(sessions * 2); k < sessions {
					src = trackers[k]
				}
				mb.QueueMessageFlags(seq, imap.UID(seq), trFlags(fmt.Sprint("$f", i)), uint64(i), src)
			default:
				mb.QueueMailboxFlags(trFlags(fmt.Sprint("$m", i)))
			}
			fmu.Unlock()
		}
		close(done)
	})
	wg.Wait()
	for i, s := range trackers {
		c := sinks[i]
		c.allowExpunge = true
		if err := s.Poll(c, true); err != nil {
			t.Fatal(err)
		}
		if c.err != nil {
			t.Fatalf("session %d: %v", i, c.err)
		}
		if c.n != count || s.NumMessages() != count {
			t.Fatalf("session %d: client %d, tracker %d, mailbox %d", i, c.n, s.NumMessages(), count)
		}
		s.Close()
	}
	waitGoroutines(t, before)
}

func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// chanSink hands each update to the test as it is written.
type chanSink struct{ c chan string }

func (s chanSink) WriteExpunge(n uint32) error { s.c <- fmt.Sprintf("%d EXPUNGE", n); return nil }
func (s chanSink) WriteNumMessages(n uint32) error {
	s.c <- fmt.Sprintf("%d EXISTS", n)
	return nil
}
func (s chanSink) WriteMailboxFlags(f []imap.Flag) error {
	s.c <- fmt.Sprintf("FLAGS %v", f)
	return nil
}
func (s chanSink) WriteMessageFlags(n uint32, uid imap.UID, f []imap.Flag, _ uint64) error {
	s.c <- fmt.Sprintf("%d FETCH UID %d %v", n, uid, f)
	return nil
}

func expectLine(t *testing.T, c chan string, want string) {
	t.Helper()
	select {
	case got := <-c:
		if got != want {
			t.Fatalf("wrote %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no %q", want)
	}
}

func TestTrackerIdle(t *testing.T) {
	before := runtime.NumGoroutine()
	mb := NewMailboxTracker(3)
	s := mb.NewSession()
	mb.QueueExpunge(3) // pending before IDLE: written at once
	sink := chanSink{make(chan string, 16)}
	stop := make(chan struct{})
	res := make(chan error, 1)
	go func() { res <- s.Idle(sink, stop) }()
	expectLine(t, sink.c, "3 EXPUNGE")

	mb.QueueNumMessages(4)
	expectLine(t, sink.c, "4 EXISTS")
	mb.QueueExpunge(1)
	expectLine(t, sink.c, "1 EXPUNGE")
	mb.QueueMessageFlags(1, 2, trFlags(`\Seen`), 0, nil)
	expectLine(t, sink.c, "1 FETCH UID 2 [\\Seen]")
	mb.QueueMessageFlags(1, 2, trFlags(`\Deleted`), 0, s) // its own: nothing
	mb.QueueMailboxFlags(trFlags(`$x`))
	expectLine(t, sink.c, "FLAGS [$x]")

	// A second Idle on the same session is refused.
	if err := s.Idle(sink, stop); err == nil {
		t.Fatal("concurrent Idle accepted")
	}

	start := time.Now()
	close(stop)
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Idle did not return after stop")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Idle took %v to stop", d)
	}
	select {
	case l := <-sink.c:
		t.Fatalf("unexpected %q", l)
	default:
	}

	// Updates queued after IDLE wait for the next poll; Idle can run again.
	mb.QueueExpunge(1)
	wantLines(t, trPoll(t, s, true), "1 EXPUNGE")

	// Close while idling ends Idle.
	stop2 := make(chan struct{})
	defer close(stop2)
	go func() { res <- s.Idle(sink, stop2) }()
	time.Sleep(10 * time.Millisecond)
	s.Close()
	select {
	case err := <-res:
		if !errors.Is(err, ErrSessionClosed) {
			t.Fatalf("Idle after Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Idle did not return after Close")
	}
	waitGoroutines(t, before)
}

// Idle with stop already closed returns at once, after writing what is
// pending.
func TestTrackerIdleStopped(t *testing.T) {
	mb := NewMailboxTracker(1)
	s := mb.NewSession()
	defer s.Close()
	mb.QueueExpunge(1)
	stop := make(chan struct{})
	close(stop)
	var l logSink
	if err := s.Idle(&l, stop); err != nil {
		t.Fatal(err)
	}
	wantLines(t, l.take(), "1 EXPUNGE")
}

// uidsIn returns exactly the UIDs in range, in order, whatever the tree's
// shape, and skips the nodes queued without a UID.
func TestDeadSetUIDsIn(t *testing.T) {
	var d deadSet
	var all []uint32
	for pos := uint32(1); pos <= 500; pos++ {
		uid := pos * 3
		if pos%50 == 0 {
			uid = 0 // the feeder did not say
		} else {
			all = append(all, uid)
		}
		d.insert(pos, uid)
	}
	for _, r := range [][2]uint32{{1, 1500}, {0, ^uint32(0)}, {3, 3}, {4, 5}, {100, 200}, {1499, 1600}, {1501, 2000}} {
		var want []uint32
		for _, u := range all {
			if u >= r[0] && u <= r[1] {
				want = append(want, u)
			}
		}
		if got := d.uidsIn(r[0], r[1]); !slices.Equal(got, want) {
			t.Errorf("uidsIn(%d, %d) = %v, want %v", r[0], r[1], got, want)
		}
	}
}
