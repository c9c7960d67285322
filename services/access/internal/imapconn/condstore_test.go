package imapconn

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// vanishedLogSink is a logSink whose client enabled QRESYNC.
type vanishedLogSink struct{ logSink }

func (l *vanishedLogSink) Vanished() bool { return true }
func (l *vanishedLogSink) WriteVanished(uids []uint32) error {
	return l.add(fmt.Sprintf("VANISHED %v", uids))
}
func (l *vanishedLogSink) WriteHighestModSeq(n uint64) error {
	return l.add(fmt.Sprintf("HIGHESTMODSEQ %d", n))
}

// RFC 5162 erratum 1810 (kept by RFC 7162): while an expunge made at
// modseq m cannot be sent (during FETCH, STORE, SEARCH), a QRESYNC session
// that is sent FETCHes with higher modseqs is also told HIGHESTMODSEQ m-1,
// the point it may safely resume from; once the VANISHED is out, nothing.
func TestTrackerHoldsHighestModSeqBelowPendingExpunges(t *testing.T) {
	mb := NewMailboxTracker(3) // UIDs 1, 2, 3
	s := mb.NewSession()
	defer s.Close()
	mb.QueueExpungeAt(2, 2, 40)
	mb.QueueMessageFlags(2, 3, []imap.Flag{imap.FlagSeen}, 41, nil) // UID 3, now at 2
	sink := &vanishedLogSink{}
	if err := s.Poll(sink, false); err != nil {
		t.Fatal(err)
	}
	if got := sink.take(); !slices.Equal(got, []string{"3 FETCH UID 3 FLAGS [\\Seen] MODSEQ 41", "HIGHESTMODSEQ 39"}) {
		t.Fatalf("with the expunge held back: %q", got)
	}
	if err := s.Poll(sink, true); err != nil {
		t.Fatal(err)
	}
	if got := sink.take(); !slices.Equal(got, []string{"VANISHED [2]"}) {
		t.Fatalf("once expunges may go: %q", got)
	}
	if err := s.Poll(sink, false); err != nil {
		t.Fatal(err)
	}
	if got := sink.take(); len(got) != 0 {
		t.Fatalf("nothing pending: %q", got)
	}
}

// RFC 7162 3.2.10: once QRESYNC is enabled, expunges are reported as
// VANISHED with the messages' UIDs, never as EXPUNGE; and like EXPUNGE,
// only where expunges may be sent.
func TestTrackerVanishedInsteadOfExpunge(t *testing.T) {
	mb := NewMailboxTracker(5) // UIDs 10, 20, 30, 40, 50
	s := mb.NewSession()
	defer s.Close()
	mb.QueueExpungeUID(4, 40)
	mb.QueueExpungeUID(2, 20)
	sink := &vanishedLogSink{}
	if err := s.Poll(sink, false); err != nil {
		t.Fatal(err)
	}
	if got := sink.take(); len(got) != 0 {
		t.Fatalf("without expunges allowed: %v", got)
	}
	if err := s.Poll(sink, true); err != nil {
		t.Fatal(err)
	}
	if got := sink.take(); !slices.Equal(got, []string{"VANISHED [20 40]"}) {
		t.Fatalf("got %v, want one VANISHED 20,40", got)
	}
	if n := s.NumMessages(); n != 3 {
		t.Fatalf("the view has %d messages, want 3", n)
	}
}

// testConnWriting returns a Conn whose responses go to buf.
func testConnWriting(buf *bytes.Buffer) *Conn {
	c := &Conn{enabled: imap.CapSet{}}
	c.bw = bufio.NewWriter(buf)
	c.enc = NewEncoder(c.bw)
	return c
}

// A VANISHED (EARLIER) answer of 100 000 UIDs that compress into 50 000
// ranges (every other UID, the worst case) goes out as several responses
// of bounded length, holding one line's ranges at a time; together they
// name exactly the UIDs (RFC 7162 3.2.5.1 / 7.: VANISHED may be repeated).
func TestVanishedWriterBoundsEachLine(t *testing.T) {
	var buf bytes.Buffer
	c := testConnWriting(&buf)
	w := c.newVanishedWriter(true)
	for u := imap.UID(1); u <= 200000; u += 2 {
		if err := w.AddRange(u, u); err != nil {
			t.Fatal(err)
		}
		if cap(w.ranges) > 2*vanishedLineRanges {
			t.Fatalf("the writer holds %d ranges", cap(w.ranges))
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	c.bw.Flush()
	var got []uint32
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\r\n"), "\r\n")
	for _, line := range lines {
		if len(line) > 4096 {
			t.Fatalf("a line of %d bytes", len(line))
		}
		rest, ok := strings.CutPrefix(line, "* VANISHED (EARLIER) ")
		if !ok {
			t.Fatalf("line %q", line)
		}
		set, err := imapNumSet(rest)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, set...)
	}
	if len(lines) < 100000/vanishedLineRanges {
		t.Fatalf("%d lines", len(lines))
	}
	if len(got) != 100000 || got[0] != 1 || got[len(got)-1] != 199999 {
		t.Fatalf("%d UIDs from %d to %d", len(got), got[0], got[len(got)-1])
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+2 {
			t.Fatalf("UID %d after %d", got[i], got[i-1])
		}
	}
	// Out of order (pages of expunge records come in expunge order):
	// nothing is lost.
	buf.Reset()
	w = c.newVanishedWriter(true)
	w.AddRange(50, 60)
	w.AddRange(10, 12)
	w.AddRange(13, 13)
	w.AddRange(55, 70)
	w.Flush()
	c.bw.Flush()
	if buf.String() != "* VANISHED (EARLIER) 50:60,10:13,55:70\r\n" {
		t.Fatalf("out of order: %q", buf.String())
	}
	// Adjacent UIDs coalesce into one range.
	buf.Reset()
	w = c.newVanishedWriter(false)
	for u := imap.UID(1); u <= 100000; u++ {
		w.AddRange(u, u)
	}
	w.Flush()
	c.bw.Flush()
	if buf.String() != "* VANISHED 1:100000\r\n" {
		t.Fatalf("got %q", buf.String())
	}
}

func imapNumSet(s string) ([]uint32, error) {
	d := NewDecoder(bufio.NewReader(strings.NewReader(s + "\r\n")))
	set, err := d.NumSet(true)
	if err != nil {
		return nil, err
	}
	uids, _ := set.(imap.UIDSet).Nums()
	out := make([]uint32, len(uids))
	for i, u := range uids {
		out[i] = uint32(u)
	}
	return out, nil
}

// RFC 7162 section 7 (formal syntax): qresync-param, known-uids without
// "*", seq-match-data of equal sizes, mod-sequence-value at least 1.
func TestParseSelectQResync(t *testing.T) {
	parse := func(args string) (*QResyncParams, *imap.SelectOptions, error) {
		d := NewDecoder(bufio.NewReader(strings.NewReader(args + "\r\n")))
		_, o, q, err := d.ParseSelectQResync()
		if err == nil {
			err = d.CRLF()
		}
		return q, o, err
	}
	q, _, err := parse(` INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))`)
	if err != nil || q.UIDValidity != 67890007 || q.ModSeq != 20050715194045000 || !q.KnownUIDs.Contains(300) || q.KnownUIDs.Contains(212) {
		t.Fatalf("RFC 7162 3.2.5 example: %+v, %v", q, err)
	}
	q, _, err = parse(` INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))`)
	if err != nil || len(q.SeqMatchSeqs) == 0 || len(q.SeqMatchUIDs) == 0 {
		t.Fatalf("RFC 7162 3.2.5.2 example with seq-match-data: %+v, %v", q, err)
	}
	if _, o, err := parse(` INBOX (CONDSTORE)`); err != nil || !o.CondStore {
		t.Fatalf("CONDSTORE: %v", err)
	}
	for _, bad := range []string{
		` INBOX (QRESYNC (67890007 0))`,           // mod-sequence-value 0
		` INBOX (QRESYNC (0 5))`,                  // uidvalidity is nz-number
		` INBOX (QRESYNC (1 5 1:*))`,              // "*" not allowed in known-uids
		` INBOX (QRESYNC (1 5 1:10 (1:3 10,11)))`, // 3 numbers, 2 UIDs
		` INBOX (QRESYNC (1 5) QRESYNC (1 5))`,    // twice
		` INBOX (QRESYNC 1 5)`,                    // not a list
		` INBOX (FOO)`,
		` INBOX (QRESYNC (1 5 1:10 (1:4294967295 1:4294967294)))`, // sizes differ (counted, not listed)                            // unknown parameter
	} {
		if _, _, err := parse(bad); err == nil || !IsClientError(err) {
			t.Errorf("%q: %v, want a client error", bad, err)
		}
	}
}

// CHANGEDSINCE takes a mod-sequence-value (at least 1); VANISHED is read
// as a modifier (the connection checks when it is allowed).
func TestParseFetchCondStoreModifiers(t *testing.T) {
	parse := func(args string) (*FetchArgs, error) {
		d := NewDecoder(bufio.NewReader(strings.NewReader(args + "\r\n")))
		a, err := d.ParseFetch(true)
		if err == nil {
			err = d.CRLF()
		}
		return a, err
	}
	a, err := parse(` 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)`)
	if err != nil || a.Options.ChangedSince != 12345 || !a.Vanished || !a.Options.ModSeq {
		t.Fatalf("%+v %v", a, err)
	}
	if _, err := parse(` 1:* (FLAGS) (CHANGEDSINCE 0)`); err == nil || !IsClientError(err) {
		t.Fatalf("CHANGEDSINCE 0: %v", err)
	}
}
