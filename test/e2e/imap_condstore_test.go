package e2e

// Transcript tests of IMAP CONDSTORE and QRESYNC (RFC 7162) over real
// sockets, from the RFC's examples and formal syntax (section 7). Each test
// quotes the section it checks.

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// csLogin dials pod i's IMAPS and logs in.
func csLogin(t *testing.T, c *cluster.Cluster, pod int, user, pass string) *rawIMAP {
	t.Helper()
	r := rawDial(t, c.Access[pod].IMAPS, true)
	r.expect(fmt.Sprintf("LOGIN %s %s", user, pass), "OK")
	return r
}

// csSelected logs in on pod i, enables what enable names (if anything)
// and selects INBOX.
func csSelected(t *testing.T, c *cluster.Cluster, pod int, user, pass, enable string) *rawIMAP {
	t.Helper()
	r := csLogin(t, c, pod, user, pass)
	if enable != "" {
		r.expect("ENABLE "+enable, "OK")
	}
	r.expect("SELECT INBOX", "OK")
	return r
}

// csDeliver delivers n small messages to user's INBOX.
func csDeliver(c *cluster.Cluster, user string, n int) {
	for i := 0; i < n; i++ {
		c.Deliver([]string{user}, []byte(fmt.Sprintf("Subject: cs %d\r\nMessage-ID: <cs%d@example.test>\r\n\r\nbody %d\r\n", i, i, i)))
	}
}

var (
	reHighestModSeq = regexp.MustCompile(`HIGHESTMODSEQ (\d+)`)
	reUIDValidity   = regexp.MustCompile(`\[UIDVALIDITY (\d+)\]`)
	reFetchModSeq   = regexp.MustCompile(`^\* (\d+) FETCH \(.*MODSEQ \((\d+)\)`)
	reFetchUID      = regexp.MustCompile(`UID (\d+)`)
)

// number returns the first submatch of re in lines as a number, failing
// the test when none matches.
func number(t *testing.T, lines []string, re *regexp.Regexp) uint64 {
	t.Helper()
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			n, err := strconv.ParseUint(m[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %v in %q", re, lines)
	return 0
}

// fetchModSeqs maps the sequence numbers of the FETCH responses in lines
// to their MODSEQ; a FETCH without MODSEQ fails the test.
func fetchModSeqs(t *testing.T, lines []string) map[uint32]uint64 {
	t.Helper()
	out := map[uint32]uint64{}
	for _, l := range lines {
		if !strings.Contains(l, " FETCH ") {
			continue
		}
		m := reFetchModSeq.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("FETCH without MODSEQ: %q", l)
		}
		seq, _ := strconv.ParseUint(m[1], 10, 32)
		ms, _ := strconv.ParseUint(m[2], 10, 64)
		out[uint32(seq)] = ms
	}
	return out
}

func fetches(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.Contains(l, " FETCH ") {
			out = append(out, l)
		}
	}
	return out
}

func linesWith(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// RFC 7162 3.1 / 3.2: CONDSTORE and QRESYNC are announced; 3.2.3 (ENABLE
// QRESYNC) and RFC 5161: ENABLE answers ENABLED with what it switched on;
// 3.1.2.1: SELECT and EXAMINE answer OK [HIGHESTMODSEQ n]; 3.1.8: SELECT
// (CONDSTORE) is accepted; 3.1.6 / 3.1.1: STATUS (HIGHESTMODSEQ) gives the
// same value; 3.2.5: SELECT (QRESYNC ...) before ENABLE QRESYNC is BAD.
func TestIMAPCondStoreEnableSelectStatus(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("cs1@example.test", "cs1-secret")
	csDeliver(c, "cs1@example.test", 2)
	r := csLogin(t, c, 0, "cs1@example.test", "cs1-secret")
	caps := r.expect("CAPABILITY", "OK")
	if !contains(caps, " CONDSTORE") || !contains(caps, " QRESYNC") {
		t.Fatalf("CAPABILITY after login: %q", caps)
	}
	// QRESYNC before ENABLE QRESYNC is a client error.
	if _, st := r.do("SELECT INBOX (QRESYNC (1 1))"); !strings.HasPrefix(st, "BAD") {
		t.Fatalf("SELECT (QRESYNC) without ENABLE: %q, want BAD", st)
	}
	sel := r.expect("SELECT INBOX (CONDSTORE)", "OK")
	hms := number(t, sel, regexp.MustCompile(`^\* OK \[HIGHESTMODSEQ (\d+)\]`))
	if hms == 0 {
		t.Fatalf("HIGHESTMODSEQ 0: %q", sel)
	}
	if ex := r.expect("EXAMINE INBOX", "OK [READ-ONLY]"); number(t, ex, reHighestModSeq) != hms || !contains(ex, "* OK [CLOSED]") {
		t.Fatalf("EXAMINE after SELECT: %q", ex)
	}
	st := r.expect("STATUS INBOX (MESSAGES HIGHESTMODSEQ)", "OK")
	if number(t, st, reHighestModSeq) != hms {
		t.Fatalf("STATUS HIGHESTMODSEQ %q, SELECT said %d", st, hms)
	}
	if en := r.expect("ENABLE CONDSTORE", "OK"); !slices.Equal(en, []string{"* ENABLED CONDSTORE"}) {
		t.Fatalf("ENABLE CONDSTORE: %q", en)
	}
	if en := r.expect("ENABLE QRESYNC", "OK"); !slices.Equal(en, []string{"* ENABLED QRESYNC"}) {
		t.Fatalf("ENABLE QRESYNC: %q", en)
	}
	// Enabling again enables nothing new (RFC 5161 3.1).
	if en := r.expect("ENABLE QRESYNC CONDSTORE", "OK"); !slices.Equal(en, []string{"* ENABLED"}) {
		t.Fatalf("ENABLE again: %q", en)
	}
	// mod-sequence-value is 1*DIGIT of at least 1 (section 7).
	if _, st := r.do("SELECT INBOX (QRESYNC (1 0))"); !strings.HasPrefix(st, "BAD") {
		t.Fatalf("QRESYNC modseq 0: %q, want BAD", st)
	}
}

// RFC 7162 3.1.4.1 (FETCH CHANGEDSINCE, example 8 style): only messages
// whose modseq is above the value are returned, each with MODSEQ; 3.1.4.2:
// the MODSEQ item; section 7: CHANGEDSINCE 0 is not a mod-sequence-value
// (BAD); 3.1.5 (SEARCH MODSEQ): messages with modseq at least the value,
// the result followed by (MODSEQ highest-of-them), also in ESEARCH.
func TestIMAPCondStoreFetchChangedSinceAndSearch(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("cs2@example.test", "cs2-secret")
	csDeliver(c, "cs2@example.test", 4)
	r := csSelected(t, c, 0, "cs2@example.test", "cs2-secret", "")
	before := fetchModSeqs(t, r.expect("FETCH 1:* (UID MODSEQ)", "OK"))
	if len(before) != 4 {
		t.Fatalf("FETCH 1:* (MODSEQ): %v", before)
	}
	base := slices.Max([]uint64{before[1], before[2], before[3], before[4]})
	// CONDSTORE is on (FETCH MODSEQ enables it): STORE answers with MODSEQ.
	st := fetchModSeqs(t, r.expect(`STORE 2,4 +FLAGS (\Flagged)`, "OK"))
	if len(st) != 2 || st[2] <= base || st[4] <= base {
		t.Fatalf("STORE answers %v, want messages 2 and 4 above %d", st, base)
	}
	ch := r.expect("FETCH 1:* (FLAGS) (CHANGEDSINCE "+strconv.FormatUint(base, 10)+")", "OK")
	got := fetchModSeqs(t, ch)
	if len(got) != 2 || got[2] != st[2] || got[4] != st[4] || !contains(ch, `\Flagged`) {
		t.Fatalf("FETCH CHANGEDSINCE %d: %q", base, ch)
	}
	if ch := r.expect("UID FETCH 1:* (FLAGS) (CHANGEDSINCE "+strconv.FormatUint(st[4], 10)+")", "OK"); len(fetches(ch)) != 0 {
		t.Fatalf("nothing changed since %d: %q", st[4], ch)
	}
	if _, s := r.do("FETCH 1:* (FLAGS) (CHANGEDSINCE 0)"); !strings.HasPrefix(s, "BAD") {
		t.Fatalf("CHANGEDSINCE 0: %q, want BAD", s)
	}
	// SEARCH MODSEQ.
	sr := r.expect("SEARCH MODSEQ "+strconv.FormatUint(base+1, 10), "OK")
	want := fmt.Sprintf("* SEARCH 2 4 (MODSEQ %d)", max(st[2], st[4]))
	if !slices.Equal(sr, []string{want}) {
		t.Fatalf("SEARCH MODSEQ: %q, want %q", sr, want)
	}
	sr = r.expect(`UID SEARCH RETURN (COUNT) MODSEQ "/flags/\\flagged" all `+strconv.FormatUint(base+1, 10), "OK")
	if len(sr) != 1 || !strings.Contains(sr[0], "COUNT 2") || !strings.HasSuffix(sr[0], fmt.Sprintf("MODSEQ %d", max(st[2], st[4]))) {
		t.Fatalf("UID SEARCH RETURN (COUNT) MODSEQ: %q", sr)
	}
	// No match: no (MODSEQ) (section 7: search-sort-mod-seq only after numbers).
	if sr := r.expect("SEARCH MODSEQ 99999999999", "OK"); !slices.Equal(sr, []string{"* SEARCH"}) {
		t.Fatalf("SEARCH MODSEQ with no match: %q", sr)
	}
}

// RFC 7162 3.1.3 (STORE UNCHANGEDSINCE, examples 5-7): a message changed
// by another session after the client's modseq is left alone and listed
// in OK [MODIFIED set] (sequence numbers for STORE, UIDs for UID STORE);
// the others are stored and answered with MODSEQ, even with .SILENT;
// UNCHANGEDSINCE 0 fails for every message.
func TestIMAPCondStoreStoreUnchangedSince(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("cs3@example.test", "cs3-secret")
	csDeliver(c, "cs3@example.test", 3)
	a := csLogin(t, c, 0, "cs3@example.test", "cs3-secret")
	b := csLogin(t, c, 0, "cs3@example.test", "cs3-secret")
	a.expect("ENABLE CONDSTORE", "OK")
	a.expect("SELECT INBOX", "OK")
	b.expect("SELECT INBOX", "OK")
	known := fetchModSeqs(t, a.expect("FETCH 1:3 (MODSEQ)", "OK"))
	since := slices.Max([]uint64{known[1], known[2], known[3]})
	// Another session changes message 2 meanwhile.
	b.expect(`STORE 2 +FLAGS ($Label1)`, "OK")
	untagged, status := a.do(fmt.Sprintf(`STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS (\Seen)`, since))
	if status != "OK [MODIFIED 2] Conditional STORE failed for some messages" {
		t.Fatalf("conditional STORE: %q %q, want OK [MODIFIED 2]", untagged, status)
	}
	stored := fetchModSeqs(t, untagged)
	for _, seq := range []uint32{1, 3} {
		if stored[seq] <= since {
			t.Errorf("message %d: MODSEQ %d not above %d (%q)", seq, stored[seq], since, untagged)
		}
	}
	for _, l := range untagged {
		if strings.HasPrefix(l, "* 2 FETCH") && strings.Contains(l, `\Seen`) {
			t.Errorf("message 2 was stored: %q", l)
		}
	}
	// UID STORE reports UIDs; the change by B is now known to A through
	// the FETCH it got (with MODSEQ).
	untagged, status = a.do(fmt.Sprintf(`UID STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\Answered)`, since))
	if !strings.HasPrefix(status, "OK [MODIFIED 1:3]") {
		t.Fatalf("UID STORE after the changes: %q %q, want OK [MODIFIED 1:3]", untagged, status)
	}
	// Example 6: .SILENT with UNCHANGEDSINCE still answers FETCH (UID n
	// MODSEQ (m)) for what it changed, without FLAGS.
	cur := fetchModSeqs(t, a.expect("FETCH 1:3 (MODSEQ)", "OK"))
	top := slices.Max([]uint64{cur[1], cur[2], cur[3]})
	untagged = a.expect(fmt.Sprintf(`UID STORE 1,3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\Answered)`, top), "OK")
	if len(untagged) != 2 || strings.Contains(strings.Join(untagged, " "), "FLAGS") {
		t.Fatalf(".SILENT conditional STORE: %q", untagged)
	}
	for seq, ms := range fetchModSeqs(t, untagged) {
		if ms <= top {
			t.Errorf("message %d: MODSEQ %d", seq, ms)
		}
	}
	// UNCHANGEDSINCE 0 (mod-sequence-valzer) fails for every message.
	if _, status := a.do(`STORE 1:3 (UNCHANGEDSINCE 0) +FLAGS ($Never)`); !strings.HasPrefix(status, "OK [MODIFIED 1:3]") {
		t.Fatalf("UNCHANGEDSINCE 0: %q", status)
	}
}

// RFC 7162 3.2 (and 3.1.2): once CONDSTORE is enabled, every untagged FETCH
// carries MODSEQ (and UID), including the flag changes made by an external
// agent: here a session on another access pod.
func TestIMAPCondStoreUnsolicitedFetchFromAnotherPod(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	c.CreateAccount("cs4@example.test", "cs4-secret")
	csDeliver(c, "cs4@example.test", 2)
	a := csLogin(t, c, 0, "cs4@example.test", "cs4-secret")
	b := csLogin(t, c, 1, "cs4@example.test", "cs4-secret")
	a.expect("ENABLE CONDSTORE", "OK")
	a.expect("SELECT INBOX", "OK")
	b.expect("ENABLE CONDSTORE", "OK")
	b.expect("SELECT INBOX", "OK")
	stored := fetchModSeqs(t, b.expect(`STORE 2 +FLAGS (\Flagged)`, "OK"))
	// NOOP waits for every change committed before it (session.catchUp).
	u := a.expect("NOOP", "OK")
	// a selected first: the messages are \Recent to it (RFC 3501 2.3.2).
	want := fmt.Sprintf(`* 2 FETCH (UID 2 FLAGS (\Flagged \Recent) MODSEQ (%d))`, stored[2])
	if !slices.Equal(fetches(u), []string{want}) {
		t.Fatalf("NOOP after another pod's STORE: %q, want %q", u, want)
	}
}

// qresyncSetup: an account with 5 messages; a first session enables
// QRESYNC, selects INBOX and remembers UIDVALIDITY and HIGHESTMODSEQ, then
// goes away (RFC 7162 3.2.5: what a client caches).
func qresyncSetup(t *testing.T, c *cluster.Cluster, user, pass string) (uidValidity, modSeq uint64) {
	t.Helper()
	csDeliver(c, user, 5)
	first := csLogin(t, c, 0, user, pass)
	first.expect("ENABLE QRESYNC", "OK")
	sel := first.expect("SELECT INBOX", "OK")
	uidValidity, modSeq = number(t, sel, reUIDValidity), number(t, sel, reHighestModSeq)
	first.expect("LOGOUT", "OK")
	return uidValidity, modSeq
}

// RFC 7162 3.2.5 (SELECT with QRESYNC, example 16 style) and 3.2.5.1:
// a client that disconnected reconnects with (QRESYNC (uidvalidity modseq
// known-uids)) and gets, before the tagged OK, exactly VANISHED (EARLIER)
// for its known UIDs expunged meanwhile and a FETCH (UID FLAGS MODSEQ) of
// each known message changed meanwhile; 3.2.6: UID FETCH (CHANGEDSINCE m
// VANISHED) gives the same VANISHED (EARLIER) plus the new message; a
// different UIDVALIDITY gets neither (the cache is void).
func TestIMAPQResyncSessionResync(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	c.CreateAccount("qr1@example.test", "qr1-secret")
	uv, ms := qresyncSetup(t, c, "qr1@example.test", "qr1-secret")
	// Meanwhile, on another pod: a flag change, two expunges, an arrival.
	other := csSelected(t, c, 1, "qr1@example.test", "qr1-secret", "")
	other.expect(`STORE 2 +FLAGS (\Flagged)`, "OK")
	other.expect(`STORE 4:5 +FLAGS (\Deleted)`, "OK")
	other.expect("EXPUNGE", "OK")
	other.expect("LOGOUT", "OK")
	csDeliver(c, "qr1@example.test", 1) // UID 6

	r := csLogin(t, c, 0, "qr1@example.test", "qr1-secret")
	r.expect("ENABLE QRESYNC", "OK")
	sel := r.expect(fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d 1:5))", uv, ms), "OK [READ-WRITE]")
	if v := linesWith(sel, "* VANISHED"); !slices.Equal(v, []string{"* VANISHED (EARLIER) 4:5"}) {
		t.Errorf("VANISHED of the resync: %q, want exactly 4:5 (EARLIER)", v)
	}
	f := fetches(sel)
	if len(f) != 1 || !strings.HasPrefix(f[0], `* 2 FETCH (UID 2 FLAGS (\Flagged) MODSEQ (`) {
		t.Errorf("FETCH of the resync: %q, want one for UID 2", f)
	}
	vanishedAt, fetchAt := slices.IndexFunc(sel, func(l string) bool { return strings.HasPrefix(l, "* VANISHED") }),
		slices.IndexFunc(sel, func(l string) bool { return strings.Contains(l, " FETCH ") })
	if !contains(sel, "* 4 EXISTS") || number(t, sel, reHighestModSeq) <= ms || vanishedAt > fetchAt {
		t.Errorf("SELECT (QRESYNC): %q", sel)
	}
	// With seq-match-data (3.2.5.2): accepted, the same answer.
	sel = r.expect(fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d 1:5 (1:3 1:3)))", uv, ms), "OK")
	if !slices.Equal(linesWith(sel, "* VANISHED"), []string{"* VANISHED (EARLIER) 4:5"}) || len(fetches(sel)) != 1 {
		t.Errorf("SELECT (QRESYNC) with seq-match-data: %q", sel)
	}
	// Without known-uids: every UID, the arrival (UID 6) is fetched too.
	sel = r.expect(fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", uv, ms), "OK")
	if !contains(sel, "* OK [CLOSED]") || !slices.Equal(linesWith(sel, "* VANISHED"), []string{"* VANISHED (EARLIER) 4:5"}) {
		t.Errorf("SELECT (QRESYNC) without known UIDs: %q", sel)
	}
	var uids []string
	for _, l := range fetches(sel) {
		uids = append(uids, reFetchUID.FindStringSubmatch(l)[1])
	}
	if !slices.Equal(uids, []string{"2", "6"}) {
		t.Errorf("FETCH of the resync without known UIDs: UIDs %v, want 2 and 6 (%q)", uids, sel)
	}
	// 3.2.6: UID FETCH with CHANGEDSINCE and VANISHED.
	uf := r.expect(fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)", ms), "OK")
	if !slices.Equal(linesWith(uf, "* VANISHED"), []string{"* VANISHED (EARLIER) 4:5"}) || len(fetches(uf)) != 2 {
		t.Errorf("UID FETCH (CHANGEDSINCE VANISHED): %q", uf)
	}
	uf = r.expect(fmt.Sprintf("UID FETCH 5:6 (FLAGS) (CHANGEDSINCE %d VANISHED)", ms), "OK")
	if !slices.Equal(linesWith(uf, "* VANISHED"), []string{"* VANISHED (EARLIER) 5"}) {
		t.Errorf("UID FETCH 5:6 (CHANGEDSINCE VANISHED): %q", uf)
	}
	// "$" (RFC 5182) is the UIDs asked about: empty since this SELECT
	// (section 2.1: "Upon successful completion of a SELECT or EXAMINE
	// command ... the current search result variable is reset to the
	// empty sequence"), then one UID that is still there.
	if uf = r.expect(fmt.Sprintf("UID FETCH $ (FLAGS) (CHANGEDSINCE %d VANISHED)", ms), "OK"); len(uf) != 0 {
		t.Errorf("UID FETCH $ (CHANGEDSINCE VANISHED) with nothing saved: %q, want nothing", uf)
	}
	r.expect("UID SEARCH RETURN (SAVE) UID 5:6", "OK")
	uf = r.expect(fmt.Sprintf("UID FETCH $ (FLAGS) (CHANGEDSINCE %d VANISHED)", ms), "OK")
	if len(linesWith(uf, "* VANISHED")) != 0 || len(fetches(uf)) != 1 {
		t.Errorf("UID FETCH $ (CHANGEDSINCE VANISHED) with $ = UID 6: %q, want UID 6's FETCH alone", uf)
	}
	// A UIDVALIDITY that is not the mailbox's: the parameters are ignored.
	sel = r.expect(fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d 1:5))", uv+1, ms), "OK")
	if len(linesWith(sel, "* VANISHED")) != 0 || len(fetches(sel)) != 0 {
		t.Errorf("SELECT (QRESYNC) with another UIDVALIDITY: %q", sel)
	}
	// Client errors (section 7 / 3.2.6): VANISHED needs UID FETCH and
	// CHANGEDSINCE; known-uids has no "*".
	for _, bad := range []string{
		fmt.Sprintf("FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)", ms),
		"UID FETCH 1:* (FLAGS) (VANISHED)",
		fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d 1:*))", uv, ms),
	} {
		if _, st := r.do(bad); !strings.HasPrefix(st, "BAD") {
			t.Errorf("%s: %q, want BAD", bad, st)
		}
	}
	// A session without QRESYNC enabled may not use VANISHED.
	plain := csSelected(t, c, 1, "qr1@example.test", "qr1-secret", "")
	if _, st := plain.do(fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)", ms)); !strings.HasPrefix(st, "BAD") {
		t.Errorf("VANISHED without ENABLE QRESYNC: %q, want BAD", st)
	}
}

// RFC 7162 3.2.10: once QRESYNC is enabled the server sends VANISHED
// uid-set instead of EXPUNGE, for expunges by this session and by others
// (here on another access pod); a session without QRESYNC still gets
// EXPUNGE.
func TestIMAPQResyncVanishedInsteadOfExpunge(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	c.CreateAccount("qr2@example.test", "qr2-secret")
	csDeliver(c, "qr2@example.test", 5)
	q := csSelected(t, c, 0, "qr2@example.test", "qr2-secret", "QRESYNC")
	plain := csSelected(t, c, 0, "qr2@example.test", "qr2-secret", "")
	other := csSelected(t, c, 1, "qr2@example.test", "qr2-secret", "")
	other.expect(`STORE 2,3 +FLAGS.SILENT (\Deleted)`, "OK")
	other.expect("EXPUNGE", "OK")
	u := q.expect("NOOP", "OK")
	if !slices.Equal(linesWith(u, "* VANISHED"), []string{"* VANISHED 2:3"}) || contains(u, "EXPUNGE") {
		t.Fatalf("NOOP after another pod's EXPUNGE, QRESYNC on: %q, want * VANISHED 2:3", u)
	}
	if u := plain.expect("NOOP", "OK"); !slices.Equal(linesWith(u, "* "), []string{"* 3 EXPUNGE", "* 2 EXPUNGE"}) {
		t.Fatalf("NOOP after the EXPUNGE, QRESYNC off: %q", u)
	}
	// Its own EXPUNGE too (message 3 now is UID 5); 3.2.7: the tagged OK
	// carries the HIGHESTMODSEQ after it.
	q.expect(`STORE 3 +FLAGS.SILENT (\Deleted)`, "OK")
	u, status := q.do("EXPUNGE")
	if !slices.Equal(linesWith(u, "* VANISHED"), []string{"* VANISHED 5"}) || contains(u, "EXPUNGE") {
		t.Fatalf("EXPUNGE with QRESYNC on: %q, want * VANISHED 5", u)
	}
	st := q.expect("STATUS INBOX (HIGHESTMODSEQ)", "OK")
	if want := fmt.Sprintf("OK [HIGHESTMODSEQ %d] ", number(t, st, reHighestModSeq)); !strings.HasPrefix(status, want) {
		t.Fatalf("EXPUNGE answered %q, want %q…", status, want)
	}
	u = q.expect("UID FETCH 1:* (FLAGS)", "OK")
	if len(fetches(u)) != 2 {
		t.Fatalf("after the expunges: %q", u)
	}
	// In IDLE too (RFC 2177 with 3.2.10): the other pod expunges UID 4.
	q.n++
	fmt.Fprintf(q.conn, "t%d IDLE\r\n", q.n)
	if l := q.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	other.expect(`UID STORE 4 +FLAGS.SILENT (\Deleted)`, "OK")
	other.expect("UID EXPUNGE 4", "OK")
	for {
		l := q.line() // the FETCH of \Deleted may come first
		if strings.Contains(l, "EXPUNGE") {
			t.Fatalf("EXPUNGE in IDLE with QRESYNC on: %q", l)
		}
		if strings.HasPrefix(l, "* VANISHED") {
			if l != "* VANISHED 4" {
				t.Fatalf("in IDLE: %q, want * VANISHED 4", l)
			}
			break
		}
	}
	fmt.Fprintf(q.conn, "DONE\r\n")
	if l := q.line(); l != fmt.Sprintf("t%d OK IDLE completed", q.n) {
		t.Fatalf("after DONE: %q", l)
	}
	// MOVE expunges from the source as EXPUNGE does (RFC 6851 section
	// 3.3): VANISHED, and the tagged OK carries HIGHESTMODSEQ (3.2.7).
	u, status = q.do("UID MOVE 1 Trash")
	if !slices.Equal(linesWith(u, "* VANISHED"), []string{"* VANISHED 1"}) || contains(u, "EXPUNGE") {
		t.Fatalf("MOVE with QRESYNC on: %q, want * VANISHED 1", u)
	}
	st = q.expect("STATUS INBOX (HIGHESTMODSEQ)", "OK")
	if want := fmt.Sprintf("OK [HIGHESTMODSEQ %d] ", number(t, st, reHighestModSeq)); !strings.HasPrefix(status, want) {
		t.Fatalf("MOVE answered %q, want %q…", status, want)
	}
}

// RFC 7162 3.2.5.1: when the client's modseq is older than what the
// server still knows of expunges (its records were pruned: one record per
// mailbox here), VANISHED (EARLIER) names every UID the client may know
// that no longer exists — possibly UIDs that never existed — but never
// leaves one out.
func TestIMAPQResyncFromBeforeThePrunedRecords(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1, StorageArgs: []string{"--expunge-records", "1"}})
	c.CreateAccount("qr3@example.test", "qr3-secret")
	uv, ms := qresyncSetup(t, c, "qr3@example.test", "qr3-secret")
	other := csSelected(t, c, 0, "qr3@example.test", "qr3-secret", "")
	for _, uid := range []int{1, 3, 4} {
		other.expect(fmt.Sprintf(`UID STORE %d +FLAGS.SILENT (\Deleted)`, uid), "OK")
		other.expect(fmt.Sprintf("UID EXPUNGE %d", uid), "OK")
	}
	r := csLogin(t, c, 0, "qr3@example.test", "qr3-secret")
	r.expect("ENABLE QRESYNC", "OK")
	sel := r.expect(fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d 1:5))", uv, ms), "OK")
	if v := linesWith(sel, "* VANISHED"); !slices.Equal(v, []string{"* VANISHED (EARLIER) 1,3:4"}) {
		t.Fatalf("VANISHED from before the pruned records: %q, want 1,3:4", v)
	}
}

// RFC 7162 3.2.5.2: with seq-match-data the server can tell which UIDs the
// client's cache still has right: when the message at a sequence number
// the client names still has the UID the client gives it, no message below
// that UID has gone since, and the (approximate, records pruned) answer
// leaves them out. Here the client's known-uids claims UID 1, which was
// already gone when it cached the mailbox (UIDs 2..5 at 1..4).
func TestIMAPQResyncSeqMatchDataNarrowsTheAnswer(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1, StorageArgs: []string{"--expunge-records", "1"}})
	c.CreateAccount("qr4@example.test", "qr4-secret")
	csDeliver(c, "qr4@example.test", 5)
	first := csSelected(t, c, 0, "qr4@example.test", "qr4-secret", "QRESYNC")
	first.expect(`UID STORE 1 +FLAGS.SILENT (\Deleted)`, "OK")
	first.expect("UID EXPUNGE 1", "OK")
	sel := first.expect("SELECT INBOX", "OK")
	uv, ms := number(t, sel, reUIDValidity), number(t, sel, reHighestModSeq)
	first.expect("LOGOUT", "OK")
	other := csSelected(t, c, 0, "qr4@example.test", "qr4-secret", "")
	for _, uid := range []int{4, 3} { // two records: the older one is pruned
		other.expect(fmt.Sprintf(`UID STORE %d +FLAGS.SILENT (\Deleted)`, uid), "OK")
		other.expect(fmt.Sprintf("UID EXPUNGE %d", uid), "OK")
	}
	r := csLogin(t, c, 0, "qr4@example.test", "qr4-secret")
	r.expect("ENABLE QRESYNC", "OK")
	sel = r.expect(fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d 1:5))", uv, ms), "OK")
	if v := linesWith(sel, "* VANISHED"); !slices.Equal(v, []string{"* VANISHED (EARLIER) 1,3:4"}) {
		t.Fatalf("without seq-match-data: %q, want 1,3:4", v)
	}
	// The client had UID 2 at 1 (still so) and UID 3 at 2 (no longer).
	sel = r.expect(fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d 1:5 (1:2 2:3)))", uv, ms), "OK")
	if v := linesWith(sel, "* VANISHED"); !slices.Equal(v, []string{"* VANISHED (EARLIER) 3:4"}) {
		t.Fatalf("with seq-match-data: %q, want 3:4", v)
	}
}

// RFC 7162 3.2.10 with RFC 5162 erratum 1810: an expunge by another
// session cannot be reported during FETCH (RFC 9051 7.5.1), yet the FETCH
// may carry higher modseqs; the server then also says OK [HIGHESTMODSEQ]
// below the expunge's, so that a client that drops the connection now
// resumes from before the expunge. The VANISHED follows at the next NOOP.
func TestIMAPQResyncHeldExpungeKeepsHighestModSeqBelow(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("qr5@example.test", "qr5-secret")
	csDeliver(c, "qr5@example.test", 3)
	q := csSelected(t, c, 0, "qr5@example.test", "qr5-secret", "QRESYNC")
	other := csSelected(t, c, 0, "qr5@example.test", "qr5-secret", "CONDSTORE")
	other.expect(`UID STORE 2 +FLAGS.SILENT (\Deleted)`, "OK")
	_, status := other.do("UID EXPUNGE 2")
	expungedAt := number(t, []string{status}, reHighestModSeq)
	other.expect(`UID STORE 3 +FLAGS (\Flagged)`, "OK")
	u := q.expect("FETCH 1:* (UID MODSEQ)", "OK")
	if contains(u, "VANISHED") || contains(u, "EXPUNGE") {
		t.Fatalf("an expunge during FETCH: %q", u)
	}
	want := fmt.Sprintf("* OK [HIGHESTMODSEQ %d]", expungedAt-1)
	if !slices.ContainsFunc(u, func(l string) bool { return strings.HasPrefix(l, want) }) {
		t.Fatalf("FETCH with an expunge held back: %q, want %q…", u, want)
	}
	if u := q.expect("NOOP", "OK"); !slices.Equal(linesWith(u, "* VANISHED"), []string{"* VANISHED 2"}) || contains(u, "HIGHESTMODSEQ") {
		t.Fatalf("NOOP: %q, want * VANISHED 2 and nothing held", u)
	}
}

// An expunge is told to a QRESYNC session once. RFC 7162 3.2.10: VANISHED
// (EARLIER) does not change the number of messages, while a VANISHED
// without it "decrements the number of messages in the mailbox"; an
// expunge the session has not been told of yet still counts in its view,
// so it is told by that VANISHED at the next command that may report
// expunges, and not also in a VANISHED (EARLIER) answered before (to UID
// FETCH (VANISHED) here; to SELECT (QRESYNC ...) when another session
// expunges while the SELECT runs). Expunges already told are still
// answered (3.2.6).
func TestIMAPQResyncExpungeToldOnce(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("qr5@example.test", "qr5-secret")
	csDeliver(c, "qr5@example.test", 3)
	q := csSelected(t, c, 0, "qr5@example.test", "qr5-secret", "QRESYNC")
	other := csSelected(t, c, 0, "qr5@example.test", "qr5-secret", "")
	since := number(t, q.expect("STATUS INBOX (HIGHESTMODSEQ)", "OK"), reHighestModSeq)

	other.expect(`UID STORE 1 +FLAGS.SILENT (\Deleted)`, "OK")
	other.expect("UID EXPUNGE 1", "OK")
	if u := q.expect("NOOP", "OK"); !slices.Equal(linesWith(u, "* VANISHED"), []string{"* VANISHED 1"}) {
		t.Fatalf("NOOP after the first expunge: %q, want * VANISHED 1", u)
	}
	// The second is made (and seen by this pod: the other session's
	// EXPUNGE waits for it) but not told yet.
	other.expect(`UID STORE 2 +FLAGS.SILENT (\Deleted)`, "OK")
	other.expect("UID EXPUNGE 2", "OK")
	u := q.expect(fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)", since), "OK")
	if got := linesWith(u, "* VANISHED"); !slices.Equal(got, []string{"* VANISHED (EARLIER) 1"}) {
		t.Errorf("UID FETCH (VANISHED) with UID 2's expunge not told yet: %q, want only * VANISHED (EARLIER) 1", got)
	}
	if u := q.expect("NOOP", "OK"); !slices.Equal(linesWith(u, "* VANISHED"), []string{"* VANISHED 2"}) {
		t.Fatalf("NOOP after the second expunge: %q, want * VANISHED 2", u)
	}
	// Once told, it is answered as any other.
	u = q.expect(fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)", since), "OK")
	if got := linesWith(u, "* VANISHED"); !slices.Equal(got, []string{"* VANISHED (EARLIER) 1:2"}) {
		t.Errorf("UID FETCH (VANISHED) after both were told: %q, want * VANISHED (EARLIER) 1:2", got)
	}
}
