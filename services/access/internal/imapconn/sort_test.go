package imapconn

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// RFC 5256 section 5 and RFC 5267 section 3: sort = ["UID" SP] "SORT"
// [search-return-opts] SP sort-criteria SP search-criteria.
func TestParseSort(t *testing.T) {
	d := NewDecoder(bufio.NewReader(strings.NewReader(" RETURN (min COUNT) (reverse Date SUBJECT) utf-8 UNSEEN FROM x\r\n")))
	a, err := d.ParseSort(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Keys) != 2 || a.Keys[0] != (SortCriterion{Key: SortDate, Reverse: true}) || a.Keys[1] != (SortCriterion{Key: SortSubject}) {
		t.Fatalf("keys %+v", a.Keys)
	}
	if a.Charset != "UTF-8" || a.Return == nil || !a.Return.ReturnMin || !a.Return.ReturnCount || a.Return.ReturnAll {
		t.Fatalf("charset %q return %+v", a.Charset, a.Return)
	}
	if len(a.Criteria.NotFlag) != 1 || len(a.Criteria.Header) != 1 {
		t.Fatalf("criteria %+v", a.Criteria)
	}
	// RFC 5182 section 1: SAVE is a return option of SORT too; alone,
	// it does not mean ALL.
	d = NewDecoder(bufio.NewReader(strings.NewReader(" RETURN (SAVE) (DATE) UTF-8 ALL\r\n")))
	if a, err = d.ParseSort(true); err != nil || a.Return == nil || !a.Return.ReturnSave || a.Return.ReturnAll {
		t.Fatalf("RETURN (SAVE): %+v %v", a, err)
	}
	for _, bad := range []string{" (DATE) ALL\r\n", " DATE UTF-8 ALL\r\n", " () UTF-8 ALL\r\n", " (REVERSE) UTF-8 ALL\r\n",
		" (DATE REVERSE) UTF-8 ALL\r\n", " (SIZE) UTF-8\r\n", " RETURN (SAVE SAVED) (SIZE) UTF-8 ALL\r\n"} {
		d := NewDecoder(bufio.NewReader(strings.NewReader(bad)))
		if _, err := d.ParseSort(false); err == nil || !IsClientError(err) {
			t.Errorf("SORT%q: %v, want a client error", bad, err)
		}
	}
}

// RFC 5256 section 5: thread = ["UID" SP] "THREAD" SP thread-alg SP
// search-criteria.
func TestParseThread(t *testing.T) {
	d := NewDecoder(bufio.NewReader(strings.NewReader(" references US-ASCII ALL\r\n")))
	a, err := d.ParseThread(true)
	if err != nil || a.Algorithm != imap.ThreadReferences || a.Charset != "US-ASCII" {
		t.Fatalf("%+v %v", a, err)
	}
	for _, bad := range []string{" ORDEREDSUBJECT ALL\r\n", " JWZ UTF-8 ALL\r\n", " REFERENCES UTF-8\r\n"} {
		d := NewDecoder(bufio.NewReader(strings.NewReader(bad)))
		if _, err := d.ParseThread(false); err == nil || !IsClientError(err) {
			t.Errorf("THREAD%q: %v, want a client error", bad, err)
		}
	}
}

func encoded(f func(e *Encoder)) string {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	f(NewEncoder(w))
	w.Flush()
	return buf.String()
}

// The responses: "* SORT", ESORT's ESEARCH (RFC 5267 section 3: ALL in
// sort order, MIN and MAX the first and last) and "* THREAD" (RFC 5256
// section 4: a single child continues its parent's list, several are
// nested lists; a dummy has no number).
func TestSortThreadResponses(t *testing.T) {
	if got := encoded(func(e *Encoder) { e.Sort([]uint32{5, 3, 4}, 0) }); got != "* SORT 5 3 4\r\n" {
		t.Errorf("SORT: %q", got)
	}
	if got := encoded(func(e *Encoder) { e.Sort(nil, 9) }); got != "* SORT\r\n" {
		t.Errorf("empty SORT: %q", got)
	}
	ret := &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true, ReturnAll: true}
	if got := encoded(func(e *Encoder) { e.ESort("A1", true, []uint32{9, 2, 3, 4, 1, 7, 8}, 0, ret) }); got != "* ESEARCH (TAG \"A1\") UID MIN 9 MAX 8 COUNT 7 ALL 9,2:4,1,7:8\r\n" {
		t.Errorf("ESORT: %q", got)
	}
	if got := encoded(func(e *Encoder) { e.ESort("A2", false, nil, 7, ret) }); got != "* ESEARCH (TAG \"A2\") COUNT 0\r\n" {
		t.Errorf("empty ESORT: %q", got)
	}
	// RFC 7162 section 3.1.5: the highest modseq of the messages returned.
	if got := encoded(func(e *Encoder) { e.Sort([]uint32{2, 3}, 917162500) }); got != "* SORT 2 3 (MODSEQ 917162500)\r\n" {
		t.Errorf("SORT with MODSEQ: %q", got)
	}
	if got := encoded(func(e *Encoder) { e.ESort("A3", false, []uint32{3, 2}, 12, &imap.SearchOptions{ReturnCount: true}) }); got != "* ESEARCH (TAG \"A3\") COUNT 2 MODSEQ 12\r\n" {
		t.Errorf("ESORT with MODSEQ: %q", got)
	}
	// RFC 5256 section 4's example: (2)(3 6 (4 23)(44 7 96))
	n := func(num uint32, ch ...*ThreadNode) *ThreadNode { return &ThreadNode{Num: num, Children: ch} }
	threads := []*ThreadNode{n(2), n(3, n(6, n(4, n(23)), n(44, n(7, n(96)))))}
	if got := encoded(func(e *Encoder) { e.Thread(threads) }); got != "* THREAD (2)(3 6 (4 23)(44 7 96))\r\n" {
		t.Errorf("THREAD: %q", got)
	}
	// A dummy root with two children: ((3)(5)).
	if got := encoded(func(e *Encoder) { e.Thread([]*ThreadNode{n(0, n(3), n(5))}) }); got != "* THREAD ((3)(5))\r\n" {
		t.Errorf("THREAD with a dummy: %q", got)
	}
	if got := encoded(func(e *Encoder) { e.Thread(nil) }); got != "* THREAD\r\n" {
		t.Errorf("empty THREAD: %q", got)
	}
}
