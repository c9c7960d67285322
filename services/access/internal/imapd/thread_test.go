package imapd

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
)

// RFC 5256 section 2.1: base subject extraction.
func TestBaseSubject(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		isRe     bool
	}{
		{"hello", "hello", false},
		{"Re: hello", "hello", true},
		{"RE: [list] Re: hello (fwd)", "hello", true},
		{"hello (FWD) (fwd)  ", "hello", true},
		{"[fwd: hello]", "hello", true},
		{"[Fwd: Re: hello]", "hello", true},
		{"[blob] hello", "hello", false},
		{"[blob]", "[blob]", false},
		{"[a][b] Re: x", "x", true},
		{"Re[2]: x", "x", true},
		{"re : x", "x", true},
		{"Fwd:  Re:\thello \r\n world ", "hello world", true},
		{"Fw: x", "x", true},
		{"Reply to all", "Reply to all", false},
		{"[unclosed hello", "[unclosed hello", false},
		{"", "", false},
	} {
		got, isRe := baseSubject(tc.in)
		if got != tc.want || isRe != tc.isRe {
			t.Errorf("baseSubject(%q) = %q, %v; want %q, %v", tc.in, got, isRe, tc.want, tc.isRe)
		}
	}
	if casemap("Hello [x]`") != "HELLO [X]`" {
		t.Errorf("casemap: %q", casemap("Hello [x]`"))
	}
}

type testMsg struct {
	id, refs, irt, subject string
}

// encodeThreads writes a THREAD response for threads over msgs (sequence
// number i+1, date i).
func threadResponse(t *testing.T, msgs []testMsg, alg imap.ThreadAlgorithm) string {
	t.Helper()
	var roots []*container
	var tms []threadMsg
	b := newThreader(len(msgs))
	for i, m := range msgs {
		subj, isRe := baseSubject(m.subject)
		tm := threadMsg{uid: uint32(i + 1), seq: uint32(i + 1), date: int64(i), subject: casemap(subj), isRe: isRe}
		tms = append(tms, tm)
		b.add(tm, m.id, m.refs, m.irt)
	}
	if alg == imap.ThreadOrderedSubject {
		roots = orderedSubject(tms)
	} else {
		tms, roots = b.msgs, b.threads()
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	imapconn.NewEncoder(w).Thread(threadNodes(roots, tms, imapconn.NumKindSeq))
	w.Flush()
	return buf.String()
}

var threadSet = []testMsg{
	{id: "<1@x>", subject: "A"},                               // 1
	{id: "<2@x>", refs: "<1@x>", subject: "Re: A"},            // 2
	{id: "<3@x>", refs: "<1@x> <2@x>", subject: "Re: A"},      // 3
	{id: "<4@x>", irt: "<1@x>", subject: "Re: A"},             // 4: In-Reply-To only
	{id: "<5@x>", subject: "B"},                               // 5
	{id: "<6@x>", refs: "<gone@x>", subject: "C"},             // 6
	{id: "<7@x>", refs: "<gone@x>", subject: "Re: C"},         // 7
	{id: "<8@x>", subject: "Re: B"},                           // 8: no references, subject of 5
	{id: "<9@x>", refs: "<9@x>", subject: "D"},                // 9: refers to itself
	{id: "<1@x>", subject: "E"},                               // 10: duplicate Message-ID
	{id: "<11@x>", refs: "<10@x> <11@x> <3@x>", subject: "F"}, // 11: under 3
	{subject: "[fwd: D]"},                                     // 12: no Message-ID, forward of D
}

// RFC 5256 section 3, REFERENCES: 1 has children 2 (with child 3, whose
// child is 11) and 4; 5 takes 8 (a reply by subject); 6 and 7 share a
// missing parent (a dummy at the root); 9 takes 12 (a forward of D); 10
// stands alone.
func TestThreadReferences(t *testing.T) {
	got := threadResponse(t, threadSet, imap.ThreadReferences)
	want := "* THREAD (1 (2 3 11)(4))(5 8)((6)(7))(9 12)(10)\r\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// RFC 5256 section 3, ORDEREDSUBJECT: one thread per base subject, every
// later message a child of the first.
func TestThreadOrderedSubject(t *testing.T) {
	got := threadResponse(t, threadSet, imap.ThreadOrderedSubject)
	want := "* THREAD (1 (2)(3)(4))(5 8)(6 7)(9 12)(10)(11)\r\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// Two non-reply roots with one subject are put under a new dummy (RFC 5256
// section 3, step 5C); a loop in References is not followed.
func TestThreadSubjectMerge(t *testing.T) {
	got := threadResponse(t, []testMsg{
		{id: "<a>", subject: "Same"},
		{id: "<b>", subject: "same"},
		{id: "<c>", refs: "<d> <c>", subject: "x"},
		{id: "<d>", refs: "<c> <d>", subject: "Re: x"},
	}, imap.ThreadReferences)
	want := "* THREAD ((1)(2))(3 4)\r\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
