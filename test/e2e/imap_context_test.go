package e2e

// Transcript tests of CONTEXT=SEARCH (RFC 5267 section 4) over real
// sockets: UPDATE with ADDTO and REMOVEFROM, PARTIAL, NOUPDATE and
// CANCELUPDATE, from the RFC's examples and formal syntax (section 5). Each
// test quotes the section it checks. The changes come from a second client
// on the other access pod, as they would from another device.

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// RFC 5267 4.3: "The search return option UPDATE, if used by a client,
// causes the server to issue unsolicited notifications containing updates
// to the results that would be returned by an unmodified searching
// command. These update sets are carried in ADDTO and REMOVEFROM data
// items in ESEARCH responses." 4.3.2: "If the UPDATE was present in a
// SEARCH or SORT command, the results will be message numbers; in a UID
// SEARCH or UID SORT command, they will be UIDs." 4.3.3: an ADDTO for
// delivered messages "MUST be sent after the EXISTS notification itself";
// 4.3.4: a REMOVEFROM for expunged messages "MUST be sent prior to the
// expunge notification itself".
func TestIMAPContextSearchUpdate(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	c.CreateAccount("ctx1@example.test", "ctx1-secret")
	csDeliver(c, "ctx1@example.test", 5) // UIDs 1..5, all unseen
	r := csSelected(t, c, 0, "ctx1@example.test", "ctx1-secret", "")
	other := csSelected(t, c, 1, "ctx1@example.test", "ctx1-secret", "")

	caps := r.expect("CAPABILITY", "OK")
	if !contains(caps, " CONTEXT=SEARCH") || !contains(caps, " ESEARCH") {
		t.Fatalf("CAPABILITY %q lacks CONTEXT=SEARCH", caps)
	}

	// The RFC's B01: UID SEARCH RETURN (UPDATE COUNT) ... answers the
	// COUNT now and updates later.
	got := r.expectTagged("B01", "UID SEARCH RETURN (UPDATE COUNT) UNSEEN", "OK")
	if !slices.Equal(got, []string{`* ESEARCH (TAG "B01") UID COUNT 5`}) {
		t.Fatalf("B01: %q", got)
	}
	// A sequence-number context over the same mailbox.
	got = r.expectTagged("C01", "SEARCH RETURN (UPDATE ALL) UNSEEN", "OK")
	if !slices.Equal(got, []string{`* ESEARCH (TAG "C01") ALL 1:5`}) {
		t.Fatalf("C01: %q", got)
	}

	// A flag change by another client: the FETCH, then REMOVEFROM.
	other.expect(`UID STORE 2 +FLAGS (\Seen)`, "OK")
	got = r.expect("NOOP", "OK")
	want := []string{`* 2 FETCH (UID 2 FLAGS (\Seen \Recent))`, `* ESEARCH (TAG "B01") UID REMOVEFROM (0 2)`, `* ESEARCH (TAG "C01") REMOVEFROM (0 2)`}
	if !slices.Equal(got, want) {
		t.Errorf("after another client's STORE: %q, want %q", got, want)
	}
	// And back: ADDTO.
	other.expect(`UID STORE 2 -FLAGS (\Seen)`, "OK")
	got = r.expect("NOOP", "OK")
	want = []string{`* 2 FETCH (UID 2 FLAGS (\Recent))`, `* ESEARCH (TAG "B01") UID ADDTO (0 2)`, `* ESEARCH (TAG "C01") ADDTO (0 2)`}
	if !slices.Equal(got, want) {
		t.Errorf("after another client's STORE -FLAGS: %q, want %q", got, want)
	}

	// A delivery: EXISTS first, then ADDTO.
	csDeliver(c, "ctx1@example.test", 1) // UID 6
	got = r.expect("NOOP", "OK")
	want = []string{`* 6 EXISTS`, `* ESEARCH (TAG "B01") UID ADDTO (0 6)`, `* ESEARCH (TAG "C01") ADDTO (0 6)`, `* 6 RECENT`}
	if !slices.Equal(got, want) {
		t.Errorf("after a delivery: %q, want %q", got, want)
	}

	// An expunge by another client: REMOVEFROM first, numbered as the
	// client still knows the message, then EXPUNGE.
	other.expect("NOOP", "OK")
	other.expect(`UID STORE 3 +FLAGS.SILENT (\Deleted)`, "OK")
	other.expect("EXPUNGE", "OK")
	got = r.expect("NOOP", "OK")
	// (The \Deleted flag change is not reported: the message went first.)
	want = []string{`* ESEARCH (TAG "B01") UID REMOVEFROM (0 3)`, `* ESEARCH (TAG "C01") REMOVEFROM (0 3)`, `* 3 EXPUNGE`}
	if !slices.Equal(got, want) {
		t.Errorf("after another client's EXPUNGE: %q, want %q", got, want)
	}

	// The client's own STORE changes the result too (4.3.2: "as and when
	// results change, whether by ... metadata such as flags being
	// changed"); sequence number 3 is now UID 4.
	got = r.expect(`STORE 3 +FLAGS.SILENT (\Seen)`, "OK")
	want = []string{`* ESEARCH (TAG "B01") UID REMOVEFROM (0 4)`, `* ESEARCH (TAG "C01") REMOVEFROM (0 3)`}
	if !slices.Equal(got, want) {
		t.Errorf("after its own STORE: %q, want %q", got, want)
	}
	// Implicit \Seen by FETCH BODY[] as well.
	got = r.expect("UID FETCH 5 BODY[]", "OK")
	if !contains(got, `* ESEARCH (TAG "B01") UID REMOVEFROM (0 5)`) || !contains(got, `* ESEARCH (TAG "C01") REMOVEFROM (0 4)`) {
		t.Errorf("after FETCH BODY[] set \\Seen: %q", got)
	}

	// Updates also reach an idle client (4.3.2: "or when the client is
	// using the IDLE facility").
	fmt.Fprintf(r.conn, "I1 IDLE\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	other.expect(`UID STORE 1 +FLAGS (\Seen)`, "OK")
	var idle []string
	for len(idle) < 3 {
		idle = append(idle, r.line())
	}
	want = []string{`* 1 FETCH (UID 1 FLAGS (\Seen \Recent))`, `* ESEARCH (TAG "B01") UID REMOVEFROM (0 1)`, `* ESEARCH (TAG "C01") REMOVEFROM (0 1)`}
	if !slices.Equal(idle, want) {
		t.Errorf("during IDLE: %q, want %q", idle, want)
	}
	fmt.Fprintf(r.conn, "DONE\r\n")
	if l := r.line(); !strings.HasPrefix(l, "I1 OK") {
		t.Fatalf("IDLE end: %q", l)
	}

	// 4.3: "An attempt to use UPDATE where a tag is already in use with a
	// previous searching command that itself used UPDATE SHALL result in
	// the server rejecting the searching command with a BAD response."
	r.expectTagged("B01", "UID SEARCH RETURN (UPDATE) ALL", "BAD")
	// Without UPDATE the tag is any tag.
	r.expectTagged("B01", "UID SEARCH RETURN (COUNT) ALL", "OK")

	// 4.3.5: "CANCELUPDATE ... will prevent all updates to the contexts
	// named in the arguments from being transmitted by the server".
	r.expectTagged("B04", `CANCELUPDATE "B01"`, "OK")
	r.expectTagged("B05", `CANCELUPDATE "B01"`, "BAD") // it is gone
	other.expect(`UID STORE 6 +FLAGS (\Seen)`, "OK")
	got = r.expect("NOOP", "OK")
	want = []string{`* 5 FETCH (UID 6 FLAGS (\Seen \Recent))`, `* ESEARCH (TAG "C01") REMOVEFROM (0 5)`}
	if !slices.Equal(got, want) {
		t.Errorf("after CANCELUPDATE of B01: %q, want %q", got, want)
	}

	// 4.3: "Updates will cease when the mailbox is no longer selected".
	r.expect("UNSELECT", "OK")
	r.expect("SELECT INBOX", "OK")
	other.expect(`UID STORE 6 -FLAGS (\Seen)`, "OK")
	got = r.expect("NOOP", "OK")
	if len(linesWith(got, "* ESEARCH")) != 0 {
		t.Errorf("updates after a new SELECT: %q", got)
	}
	r.expectTagged("B06", `CANCELUPDATE "C01"`, "BAD")
}

// RFC 5267 4.3.1: "the server MAY refuse to provide updates ... an
// untagged NO is generated during processing of the command with a
// response-code of NOUPDATE. ... Other return options specified SHALL
// still be honoured." Sequence numbers, "*" and "$" move as the mailbox
// changes, so searches by them are answered without updates.
func TestIMAPContextSearchNoUpdate(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("ctx2@example.test", "ctx2-secret")
	csDeliver(c, "ctx2@example.test", 4)
	r := csSelected(t, c, 0, "ctx2@example.test", "ctx2-secret", "")
	for i, criteria := range []string{"2:3", "UID 2:*", "NEW", "OR SEEN 1"} {
		tag := fmt.Sprintf("N%d", i)
		got := r.expectTagged(tag, "SEARCH RETURN (UPDATE COUNT) "+criteria, "OK")
		if len(got) != 2 || got[0] != fmt.Sprintf(`* NO [NOUPDATE "%s"] Search results of these criteria are not kept up to date`, tag) ||
			!strings.HasPrefix(got[1], fmt.Sprintf(`* ESEARCH (TAG "%s") COUNT `, tag)) {
			t.Errorf("SEARCH RETURN (UPDATE COUNT) %s: %q", criteria, got)
		}
		// Refused contexts do not exist.
		r.expectTagged("X"+tag, fmt.Sprintf("CANCELUPDATE %q", tag), "BAD")
	}
	// Static UID sets are kept up to date.
	got := r.expectTagged("U1", "UID SEARCH RETURN (UPDATE) UID 2:10", "OK")
	if !slices.Equal(got, []string{`* ESEARCH (TAG "U1") UID`}) {
		t.Errorf("UID SEARCH RETURN (UPDATE) UID 2:10: %q", got)
	}
	csDeliver(c, "ctx2@example.test", 1) // UID 5: in 2:10
	got = r.expect("NOOP", "OK")
	if !slices.Equal(got, []string{"* 5 EXISTS", `* ESEARCH (TAG "U1") UID ADDTO (0 5)`, "* 5 RECENT"}) {
		t.Errorf("arrival in a static UID range: %q", got)
	}
	// Malformed return options are BAD at once (section 5 formal syntax).
	for _, bad := range []string{"SEARCH RETURN (UPDATE UPDATES) ALL", "SEARCH RETURN (PARTIAL) ALL",
		"SEARCH RETURN (PARTIAL 1:*) ALL", "SEARCH RETURN (PARTIAL 0:5) ALL", `CANCELUPDATE`, `CANCELUPDATE B01`,
		"UID CANCELUPDATE \"U1\""} {
		r.expect(bad, "BAD")
	}
}

// RFC 5267 4.4: "The PARTIAL search return option causes the server to
// provide in an ESEARCH response a subset of the results denoted by the
// sequence range given as the mandatory argument. The first result is 1
// ... Where a PARTIAL search return option references results that do not
// exist ... the server returns the results that are in the set. This
// yields a PARTIAL return data item that has, as payload, the original
// range and a potentially missing set of results". "A single command MUST
// NOT contain more than one PARTIAL or ALL search return option"; "A range
// 500:400 is the same as 400:500".
func TestIMAPContextSearchPartial(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("ctx3@example.test", "ctx3-secret")
	csDeliver(c, "ctx3@example.test", 12)
	r := csSelected(t, c, 0, "ctx3@example.test", "ctx3-secret", "")
	// Results: UIDs 1,3,5,...,11 after flagging the even ones.
	r.expect(`STORE 2,4,6,8,10,12 +FLAGS.SILENT (\Flagged)`, "OK")
	for _, tc := range []struct{ cmd, want string }{
		{"UID SEARCH RETURN (PARTIAL 2:4) UNFLAGGED", `* ESEARCH (TAG "P") UID PARTIAL (2:4 3,5,7)`},
		{"UID SEARCH RETURN (PARTIAL 4:2) UNFLAGGED", `* ESEARCH (TAG "P") UID PARTIAL (2:4 3,5,7)`},
		{"UID SEARCH RETURN (PARTIAL 5:100) UNFLAGGED", `* ESEARCH (TAG "P") UID PARTIAL (5:100 9,11)`},
		{"UID SEARCH RETURN (PARTIAL 7:9) UNFLAGGED", `* ESEARCH (TAG "P") UID PARTIAL (7:9 NIL)`},
		{"UID SEARCH RETURN (PARTIAL 1:3) ALL", `* ESEARCH (TAG "P") UID PARTIAL (1:3 1:3)`},
		{"UID SEARCH RETURN (PARTIAL 10:12) ALL", `* ESEARCH (TAG "P") UID PARTIAL (10:12 10:12)`},
		{"SEARCH RETURN (COUNT PARTIAL 1:2) FLAGGED", `* ESEARCH (TAG "P") COUNT 6 PARTIAL (1:2 2,4)`},
		{"SEARCH RETURN (MIN MAX PARTIAL 6:6) FLAGGED", `* ESEARCH (TAG "P") MIN 2 MAX 12 PARTIAL (6:6 12)`},
	} {
		got := r.expectTagged("P", tc.cmd, "OK")
		if !slices.Equal(got, []string{tc.want}) {
			t.Errorf("%s: %q, want %q", tc.cmd, got, tc.want)
		}
	}
	r.expect("SEARCH RETURN (PARTIAL 1:2 ALL) ALL", "BAD")
	r.expect("SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL", "BAD")
}

var reESearchUpdate = regexp.MustCompile(`^\* ESEARCH \(TAG "([^"]+)"\) UID (ADDTO|REMOVEFROM) \(0 ([0-9:,]+)\)$`)

// contextClient is one client keeping a search result by RFC 5267's
// updates alone.
type contextClient struct {
	r        *rawIMAP
	criteria string
	result   map[uint32]bool
}

// apply applies the ADDTO and REMOVEFROM of its context among lines, in
// order (4.3.2: "The client MUST process ADDTO and REMOVEFROM return data
// items in the order they appear").
func (cc *contextClient) apply(t *testing.T, tag string, lines []string) {
	for _, l := range lines {
		m := reESearchUpdate.FindStringSubmatch(l)
		if m == nil || m[1] != tag {
			continue
		}
		for _, part := range strings.Split(m[3], ",") {
			lo, hi, _ := strings.Cut(part, ":")
			a, _ := strconv.ParseUint(lo, 10, 32)
			b := a
			if hi != "" {
				b, _ = strconv.ParseUint(hi, 10, 32)
			}
			for u := min(a, b); u <= max(a, b); u++ {
				if m[2] == "ADDTO" {
					if cc.result[uint32(u)] {
						t.Errorf("%s: ADDTO of UID %d already in the result", cc.criteria, u)
					}
					cc.result[uint32(u)] = true
				} else {
					if !cc.result[uint32(u)] {
						t.Errorf("%s: REMOVEFROM of UID %d not in the result", cc.criteria, u)
					}
					delete(cc.result, uint32(u))
				}
			}
		}
	}
}

// A concurrency test: clients on both pods keep results of several
// criteria by updates alone while writers on both pods flip flags, deliver,
// append and expunge in a mailbox of a few hundred messages. After the
// writers stop, every client's kept result must equal a fresh search, and
// no update may have added a UID already there or removed one that was not.
func TestIMAPContextSearchUnderConcurrentChanges(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 2})
	const user, pass = "ctx4@example.test", "ctx4-secret"
	c.CreateAccount(user, pass)
	csDeliver(c, user, 300)
	criteria := []string{"UNSEEN", "FLAGGED", "KEYWORD $Work", "OR FLAGGED DELETED", "NOT SEEN FLAGGED",
		"SUBJECT \"cs 1\"", "LARGER 10 UNSEEN"}
	var clients []*contextClient
	for i, crit := range criteria {
		cc := &contextClient{r: csSelected(t, c, i%2, user, pass, ""), criteria: crit, result: map[uint32]bool{}}
		got := cc.r.expectTagged("K", "UID SEARCH RETURN (UPDATE ALL) "+crit, "OK")
		if len(got) != 1 {
			t.Fatalf("%s: %q", crit, got)
		}
		if _, all, ok := strings.Cut(got[0], " ALL "); ok {
			cc.apply(t, "K", []string{`* ESEARCH (TAG "K") UID ADDTO (0 ` + all + ")"})
		}
		clients = append(clients, cc)
	}

	// Writers: two clients on each pod, random changes for a few seconds.
	deadline := time.Now().Add(8 * time.Second)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wr := csSelected(t, c, w%2, user, pass, "")
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 7))
			flags := []string{`\Seen`, `\Flagged`, `\Deleted`, `$Work`}
			for time.Now().Before(deadline) {
				n := rng.IntN(400) + 1
				switch op := rng.IntN(10); {
				case op < 6:
					sign := "+"
					if rng.IntN(2) == 0 {
						sign = "-"
					}
					wr.do(fmt.Sprintf("UID STORE %d:%d %sFLAGS.SILENT (%s)", n, n+rng.IntN(20), sign, flags[rng.IntN(len(flags))]))
				case op < 7:
					wr.do(fmt.Sprintf("UID EXPUNGE %d:%d", n, n+rng.IntN(5)))
				case op < 8:
					wr.do(fmt.Sprintf("APPEND INBOX (\\Flagged) {%d+}\r\nSubject: cs 1%d\r\n\r\nx\r\n", len(fmt.Sprintf("Subject: cs 1%d\r\n\r\nx\r\n", n)), n))
				default:
					wr.do("NOOP")
				}
			}
		}(uint64(w))
	}
	// Meanwhile the context clients poll and idle now and then.
	for i, cc := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				lines, _ := cc.r.do("NOOP")
				cc.apply(t, "K", lines)
				time.Sleep(time.Duration(50+i*20) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	csDeliver(c, user, 3)
	for _, cc := range clients {
		lines := cc.r.expect("NOOP", "OK")
		cc.apply(t, "K", lines)
		fresh := cc.r.expect("UID SEARCH "+cc.criteria, "OK")
		want := map[uint32]bool{}
		for _, l := range fresh {
			for _, f := range strings.Fields(strings.TrimPrefix(l, "* SEARCH")) {
				n, err := strconv.ParseUint(f, 10, 32)
				if err == nil {
					want[uint32(n)] = true
				}
			}
		}
		if len(want) != len(cc.result) {
			t.Errorf("%s: kept %d results, a fresh search finds %d", cc.criteria, len(cc.result), len(want))
		}
		for u := range want {
			if !cc.result[u] {
				t.Errorf("%s: UID %d matches but was never added", cc.criteria, u)
				break
			}
		}
		for u := range cc.result {
			if !want[u] {
				t.Errorf("%s: UID %d kept but no longer matches", cc.criteria, u)
				break
			}
		}
	}
}
