package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// rawAppend appends msg with an internal date (LITERAL+).
func rawAppend(r *rawIMAP, mailbox, date, msg string) {
	r.t.Helper()
	r.expect(fmt.Sprintf("APPEND %s \"%s\" {%d+}\r\n%s", mailbox, date, len(msg), msg), "OK")
}

// sortMessage is a message with the header fields SORT looks at and a body
// of pad octets (for SIZE).
func sortMessage(from, to, cc, subject, date string, pad int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\n", from, to)
	if cc != "" {
		fmt.Fprintf(&b, "Cc: %s\r\n", cc)
	}
	if date != "" {
		fmt.Fprintf(&b, "Date: %s\r\n", date)
	}
	fmt.Fprintf(&b, "Subject: %s\r\n\r\n%s\r\n", subject, strings.Repeat("x", pad))
	return b.String()
}

// expectOne runs cmd and returns its only untagged line.
func (c *rawIMAP) expectOne(cmd, want string) string {
	c.t.Helper()
	lines := c.expect(cmd, want)
	if len(lines) != 1 {
		c.t.Fatalf("%s: untagged %q, want one line", cmd, lines)
	}
	return lines[0]
}

// SORT (RFC 5256 section 3, sections 4 and 5 for the syntax), SORT=DISPLAY
// (RFC 5957) and ESORT (RFC 5267 section 3) on five hand-made messages
// whose every key gives another order.
func TestIMAPSort(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("sort@example.test", "sort-secret")
	r := rawDial(t, c.Access[0].IMAPS, true)
	r.expect("LOGIN sort@example.test sort-secret", "OK")
	caps := strings.Join(r.expect("CAPABILITY", "OK"), " ")
	for _, want := range []string{" SORT ", " SORT=DISPLAY ", " ESORT ", " THREAD=ORDEREDSUBJECT ", " THREAD=REFERENCES "} {
		if !strings.Contains(caps+" ", want) {
			t.Errorf("CAPABILITY lacks %q: %s", want, caps)
		}
	}
	// CONTEXT=SORT would keep positions in the sort order up to date
	// (RFC 5267 section 4): not offered (CONTEXT=SEARCH is, with its own
	// tests in imap_context_test.go).
	if strings.Contains(caps, "CONTEXT=SORT") {
		t.Errorf("CAPABILITY announces CONTEXT=SORT: %s", caps)
	}

	// A message appended and expunged first: UIDs are sequence numbers + 1.
	rawAppend(r, "INBOX", "01-Jan-2026 00:00:00 +0000", sortMessage("x@x.example", "x@x.example", "", "gone", "", 1))
	r.expect("SELECT INBOX", "OK")
	r.expect("STORE 1 +FLAGS.SILENT (\\Deleted)", "OK")
	r.expect("EXPUNGE", "OK")
	msgs := []struct{ arrival, msg string }{
		{"05-Jan-2026 00:00:00 +0000", sortMessage(`"Zed Alpha" <carol@x.example>`, "bob@x.example", "",
			"Re: Banana", "Sat, 03 Jan 2026 10:00:00 +0000", 5000)},
		{"01-Jan-2026 00:00:00 +0000", sortMessage(`alice <Dave@x.example>`, "alice@x.example", "zoe@x.example",
			"apple", "Thu, 01 Jan 2026 12:00:00 +0500", 1000)},
		// No Date: its internal date is its sent date (RFC 5256 section 2.2).
		{"03-Jan-2026 00:00:00 +0000", sortMessage(`<bob@x.example>`, `"Carl" <dan@x.example>`, "amy@x.example",
			"[list] Cherry (fwd)", "", 3000)},
		{"02-Jan-2026 00:00:00 +0000", sortMessage(`"Bob" <alice@x.example>`, `"Zara" <charlie@x.example>`, "Bob@x.example",
			"Fwd: apple", "Fri, 02 Jan 2026 23:00:00 -0800", 4000)},
		{"04-Jan-2026 00:00:00 +0000", sortMessage(`eve@x.example`, `Eve <eve@x.example>`, "",
			"[fwd: Banana]", "Thu, 01 Jan 2026 00:00:00 +0000", 2000)},
	}
	for _, m := range msgs {
		rawAppend(r, "INBOX", m.arrival, m.msg)
	}
	r.expect("NOOP", "OK")

	for _, tc := range []struct{ cmd, want string }{
		// Section 3: each key.
		{"SORT (ARRIVAL) UTF-8 ALL", "* SORT 2 4 3 5 1"},
		// DATE in UTC: 5 (1 Jan 00:00), 2 (1 Jan 07:00), 3 (3 Jan 00:00,
		// its internal date), 4 (3 Jan 07:00), 1 (3 Jan 10:00).
		{"SORT (DATE) UTF-8 ALL", "* SORT 5 2 3 4 1"},
		// FROM, TO, CC: the first address's addr-mailbox, i;ascii-casemap.
		{"SORT (FROM) UTF-8 ALL", "* SORT 4 3 1 2 5"},
		{"SORT (TO) US-ASCII ALL", "* SORT 2 1 4 3 5"},
		// No Cc sorts as the empty string, first; ties in mailbox order.
		{"SORT (CC) UTF-8 ALL", "* SORT 1 5 3 4 2"},
		{"SORT (SIZE) UTF-8 ALL", "* SORT 2 5 3 4 1"},
		// Section 2.1: base subjects apple (2, 4: "Fwd:"), banana (1:
		// "Re:", 5: "[fwd: ...]"), cherry (3: "[list]" and "(fwd)").
		{"SORT (SUBJECT) UTF-8 ALL", "* SORT 2 4 1 5 3"},
		// REVERSE reverses the key only: equal subjects stay in mailbox order.
		{"SORT (REVERSE SUBJECT) UTF-8 ALL", "* SORT 3 1 5 2 4"},
		{"sort (subject reverse date) utf-8 all", "* SORT 4 2 1 5 3"},
		{"SORT (REVERSE ARRIVAL) UTF-8 ALL", "* SORT 1 5 3 4 2"},
		// RFC 5957: the display name, or the addr-spec without one.
		{"SORT (DISPLAYFROM) UTF-8 ALL", "* SORT 2 4 3 5 1"},
		{"SORT (DISPLAYTO) UTF-8 ALL", "* SORT 2 1 3 5 4"},
		// Search criteria (section 4: search-criteria as in SEARCH).
		{"SORT (DATE) UTF-8 SUBJECT apple", "* SORT 2 4"},
		{"SORT (SIZE) UTF-8 LARGER 2500 NOT FROM carol", "* SORT 3 4"},
		{"SORT (SIZE) UTF-8 SUBJECT nothing-matches", "* SORT"},
		// UID SORT answers UIDs.
		{"UID SORT (FROM) UTF-8 ALL", "* SORT 5 4 2 3 6"},
		{"UID SORT (SIZE) UTF-8 UID 2:4", "* SORT 3 4 2"},
		// RFC 5267 section 3: MIN and MAX are the first and last in sort
		// order; ALL is in sort order.
		{"SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL", "* ESEARCH (TAG \"t%d\") MIN 5 MAX 1 COUNT 5"},
		{"SORT RETURN (ALL) (ARRIVAL) UTF-8 ALL", "* ESEARCH (TAG \"t%d\") ALL 2,4,3,5,1"},
		{"UID SORT RETURN () (SIZE) UTF-8 ALL", "* ESEARCH (TAG \"t%d\") UID ALL 3,6,4:5,2"},
		{"SORT RETURN (COUNT) (DATE) UTF-8 SUBJECT nothing-matches", "* ESEARCH (TAG \"t%d\") COUNT 0"},
	} {
		want := tc.want
		if strings.Contains(want, "%d") {
			want = fmt.Sprintf(want, r.n+1)
		}
		if got := r.expectOne(tc.cmd, "OK"); got != want {
			t.Errorf("%s:\n got  %q\n want %q", tc.cmd, got, want)
		}
	}

	// SEARCHRES with ESORT. RFC 5182 section 1: "the result of a SEARCH
	// (or UID SEARCH) command (as well as any command based on SEARCH,
	// e.g., SORT and THREAD [SORT])" may be saved. RFC 9051 6.4.4 (from
	// RFC 5182): "In absence of any other SEARCH result option, the SAVE
	// result option also suppresses any ESEARCH response"; combined with
	// MIN and/or MAX alone, only the messages MIN and MAX name are saved, which in ESORT
	// are the first and last in sort order (RFC 5267 section 3); with
	// ALL or COUNT, every match.
	fetchUIDs := func(cmd string) string {
		t.Helper()
		var uids []string
		for _, l := range r.expect(cmd, "OK") {
			if i := strings.Index(l, "UID "); i >= 0 {
				uids = append(uids, strings.TrimRight(strings.Fields(l[i+4:])[0], ")"))
			}
		}
		return strings.Join(uids, " ")
	}
	for _, tc := range []struct{ cmd, want, saved string }{
		{"SORT RETURN (SAVE) (DATE) UTF-8 SUBJECT apple", "", "3 5"},
		{"SORT RETURN (MIN SAVE) (DATE) UTF-8 ALL", "* ESEARCH (TAG \"t%d\") MIN 5", "6"},
		{"UID SORT RETURN (MAX SAVE MIN) (SIZE) UTF-8 ALL", "* ESEARCH (TAG \"t%d\") UID MIN 3 MAX 2", "2 3"},
		{"SORT RETURN (COUNT SAVE) (SIZE) UTF-8 LARGER 2500", "* ESEARCH (TAG \"t%d\") COUNT 3", "2 4 5"},
		{"SORT RETURN (SAVE ALL MIN) (REVERSE SIZE) UTF-8 SUBJECT banana", "* ESEARCH (TAG \"t%d\") MIN 1 ALL 1,5", "2 6"},
		// "$" as a criterion of the next SORT, then saved anew.
		{"SORT RETURN (MAX SAVE) (DATE) UTF-8 $", "* ESEARCH (TAG \"t%d\") MAX 1", "2"},
		// The same rule for SEARCH: MAX alone saves the last match only.
		{"SEARCH RETURN (MAX SAVE) SUBJECT apple", "* ESEARCH (TAG \"t%d\") MAX 4", "5"},
	} {
		lines := r.expect(tc.cmd, "OK")
		want := tc.want
		if want != "" {
			want = fmt.Sprintf(want, r.n)
		}
		if got := strings.Join(lines, "\n"); got != want {
			t.Errorf("%s:\n got  %q\n want %q", tc.cmd, got, want)
		}
		if got := fetchUIDs("UID FETCH $ (FLAGS)"); got != tc.saved {
			t.Errorf("after %s: $ is UIDs %q, want %q", tc.cmd, got, tc.saved)
		}
	}

	// A failed SEARCH or SORT with SAVE. RFC 5182 section 2.1: "A SEARCH
	// command with the SAVE result option that caused the server to return
	// the NO tagged response sets the value of the search result variable
	// to the empty sequence", and "a SEARCH command that caused the server
	// to return the BAD tagged response" MUST NOT change it. (Section 1:
	// SORT is a command "based on SEARCH".)
	const apples = "3 5"
	for _, tc := range []struct{ cmd, status, saved string }{
		{"SEARCH RETURN (SAVE) SUBJECT apple", "OK", apples},
		{"SORT RETURN (SAVE) (DATE) KOI8-R SUBJECT apple", "NO [BADCHARSET", ""},
		{"SEARCH RETURN (SAVE) SUBJECT apple", "OK", apples},
		{"SEARCH RETURN (SAVE) CHARSET KOI8-R ALL", "NO [BADCHARSET", ""},
		{"UID SORT RETURN (SAVE) (DATE) UTF-8 SUBJECT apple", "OK", apples},
		{"SEARCH RETURN (SAVE) NO-SUCH-KEY", "BAD", apples},
		{"SORT RETURN (SAVE) (NO-SUCH-KEY) UTF-8 ALL", "BAD", apples},
	} {
		r.expect(tc.cmd, tc.status)
		if got := fetchUIDs("UID FETCH $ (FLAGS)"); got != tc.saved {
			t.Errorf("after %s (%s): $ is UIDs %q, want %q", tc.cmd, tc.status, got, tc.saved)
		}
	}

	// RFC 7162 section 3.1.5: with a MODSEQ criterion, the highest modseq
	// of the messages returned follows (in ESORT, as ESEARCH's MODSEQ).
	var highest uint64
	for _, l := range r.expect("FETCH 1:* (MODSEQ)", "OK") {
		var ms uint64
		i := strings.Index(l, "MODSEQ (")
		if i < 0 {
			t.Fatalf("FETCH MODSEQ: %q", l)
		}
		if _, err := fmt.Sscanf(l[i:], "MODSEQ (%d)", &ms); err != nil {
			t.Fatalf("FETCH MODSEQ: %q", l)
		}
		highest = max(highest, ms)
	}
	if got, want := r.expectOne("SORT (DATE) UTF-8 MODSEQ 1", "OK"), fmt.Sprintf("* SORT 5 2 3 4 1 (MODSEQ %d)", highest); got != want {
		t.Errorf("SORT with MODSEQ: %q, want %q", got, want)
	}
	got := r.expectOne("SORT RETURN (COUNT) (DATE) UTF-8 MODSEQ 1", "OK")
	if want := fmt.Sprintf("* ESEARCH (TAG \"t%d\") COUNT 5 MODSEQ %d", r.n, highest); got != want {
		t.Errorf("ESORT with MODSEQ: %q, want %q", got, want)
	}

	// Section 5 syntax: errors are BAD; a charset that is not supported is
	// NO [BADCHARSET] (section 3).
	for _, cmd := range []string{
		"SORT (DATE) ALL",          // no charset
		"SORT DATE UTF-8 ALL",      // criteria not in parentheses
		"SORT () UTF-8 ALL",        // no criterion
		"SORT (REVERSE) UTF-8 ALL", // REVERSE without a key
		"SORT (COLOR) UTF-8 ALL",   // unknown key
		"SORT (DATE) UTF-8",        // no search key
		"THREAD COLOR UTF-8 ALL",   // unknown algorithm
		"THREAD REFERENCES UTF-8",  // no search key
		"UID THREAD (REFERENCES) UTF-8 ALL",
	} {
		r.expect(cmd, "BAD")
	}
	r.expect("SORT (DATE) KOI8-R ALL", "NO [BADCHARSET")
	r.expect("THREAD REFERENCES ISO-2022-JP ALL", "NO [BADCHARSET")
	// SORT is a command of the selected state.
	r.expect("UNSELECT", "OK")
	r.expect("SORT (DATE) UTF-8 ALL", "BAD")
}

// threadMessage is a message of the THREAD transcript: day orders the
// sent dates as the mailbox order.
func threadMessage(day int, id, refs, inReplyTo, subject string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: t@x.example\r\nDate: %02d Mar 2026 10:00:00 +0000\r\n", day)
	if id != "" {
		fmt.Fprintf(&b, "Message-ID: %s\r\n", id)
	}
	if refs != "" {
		fmt.Fprintf(&b, "References: %s\r\n", refs)
	}
	if inReplyTo != "" {
		fmt.Fprintf(&b, "In-Reply-To: %s\r\n", inReplyTo)
	}
	fmt.Fprintf(&b, "Subject: %s\r\n\r\nbody\r\n", subject)
	return b.String()
}

// THREAD (RFC 5256 sections 3 and 4) on twelve hand-made messages whose
// trees are written out.
func TestIMAPThread(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("thread@example.test", "thread-secret")
	r := rawDial(t, c.Access[0].IMAPS, true)
	r.expect("LOGIN thread@example.test thread-secret", "OK")
	r.expect("CREATE Threads", "OK")
	set := []struct{ id, refs, irt, subject string }{
		{"<1@x>", "", "", "A"},                             // 1
		{"<2@x>", "<1@x>", "", "Re: A"},                    // 2: reply to 1
		{"<3@x>", "<1@x> <2@x>", "", "Re: A"},              // 3: reply to 2
		{"<4@x>", "", "<1@x>", "Re: A"},                    // 4: In-Reply-To only
		{"<5@x>", "", "", "B"},                             // 5
		{"<6@x>", "<gone@x>", "", "C"},                     // 6: parent not here
		{"<7@x>", "<gone@x>", "", "Re: C"},                 // 7: same parent
		{"<8@x>", "", "", "Re: B"},                         // 8: no references
		{"<9@x>", "<9@x>", "", "D"},                        // 9: refers to itself
		{"<1@x>", "", "", "E"},                             // 10: duplicate Message-ID
		{"<11@x>", "<10@x>\r\n <11@x>\r\n <3@x>", "", "F"}, // 11: under 3 (folded)
		{"", "", "", "[fwd: D]"},                           // 12: no Message-ID
	}
	for i, m := range set {
		rawAppend(r, "Threads", "01-Mar-2026 00:00:00 +0000", threadMessage(i+1, m.id, m.refs, m.irt, m.subject))
	}
	r.expect("SELECT Threads", "OK")
	for _, tc := range []struct{ cmd, want string }{
		// REFERENCES: 1 has children 2 (whose child 3 has child 11) and 4;
		// 8 joins 5 as a reply by subject (step 5); 6 and 7 share a dummy
		// parent, kept at the root with two children (step 4); 12, a
		// forward of D, joins 9; 10 (a duplicate ID) stands alone.
		{"THREAD REFERENCES UTF-8 ALL", "* THREAD (1 (2 3 11)(4))(5 8)((6)(7))(9 12)(10)"},
		// ORDEREDSUBJECT: by base subject, every later message a child of
		// the first; threads by their first message's date.
		{"THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (1 (2)(3)(4))(5 8)(6 7)(9 12)(10)(11)"},
		// Only the matching messages are threaded.
		{"THREAD REFERENCES UTF-8 NOT SUBJECT A", "* THREAD (5 8)((6)(7))(9 12)(10)(11)"},
		{"THREAD REFERENCES US-ASCII SUBJECT nothing-matches", "* THREAD"},
	} {
		if got := r.expectOne(tc.cmd, "OK"); got != tc.want {
			t.Errorf("%s:\n got  %q\n want %q", tc.cmd, got, tc.want)
		}
	}
	// UID THREAD: with 1 and 2 expunged, UIDs differ from sequence
	// numbers. 10 is now the first message with ID <1@x>: the parent of
	// 4 (In-Reply-To) and of 3 (its parent <2@x> is a dummy, pruned).
	r.expect("STORE 1:2 +FLAGS.SILENT (\\Deleted)", "OK")
	r.expect("EXPUNGE", "OK")
	for _, tc := range []struct{ cmd, want string }{
		{"UID THREAD REFERENCES UTF-8 ALL", "* THREAD (5 8)((6)(7))(9 12)(10 (3 11)(4))"},
		{"THREAD REFERENCES UTF-8 ALL", "* THREAD (3 6)((4)(5))(7 10)(8 (1 9)(2))"},
	} {
		if got := r.expectOne(tc.cmd, "OK"); got != tc.want {
			t.Errorf("%s:\n got  %q\n want %q", tc.cmd, got, tc.want)
		}
	}
}
