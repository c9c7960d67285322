package imapd

import (
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// A UID walk's jump from range to range lands on exactly the entries in
// the set, for overlapping, unsorted, touching and out-of-mailbox ranges.
func TestUIDWalkSkipsToItsRanges(t *testing.T) {
	var entries []entry
	for uid := uint32(3); uid <= 3000; uid += 3 {
		entries = append(entries, entry{uid: uid})
	}
	sets := []imap.UIDSet{
		{{Start: 2990, Stop: 5000}},
		{{Start: 1, Stop: 2}, {Start: 4000, Stop: 4100}},
		{{Start: 100, Stop: 200}, {Start: 150, Stop: 160}, {Start: 10, Stop: 12}, {Start: 201, Stop: 205}},
		{{Start: 300, Stop: 300}, {Start: 301, Stop: 301}, {Start: 900, Stop: 903}, {Start: 2999, Stop: 3000}},
		{}, // matches nothing (SEARCH RECENT with no recent message)
	}
	for _, set := range sets {
		w := &targetWalk{uids: mergedUIDSet(slices.Clone(set))}
		if w.uids == nil {
			t.Fatalf("set %v merged to nil, which a walk takes for no UID filter", set)
		}
		var want, got []uint32
		for _, e := range entries {
			for _, r := range set {
				if e.uid >= uint32(r.Start) && e.uid <= uint32(r.Stop) {
					want = append(want, e.uid)
					break
				}
			}
		}
		for i := 0; i < len(entries); i++ {
			if i = w.skipTo(entries, i); i == len(entries) {
				break
			}
			if w.uids.Contains(imap.UID(entries[i].uid)) {
				got = append(got, entries[i].uid)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("set %v: walked %v, want %v", set, got, want)
		}
		for i := 1; i < len(w.uids); i++ {
			if w.uids[i].Start <= w.uids[i-1].Stop+1 {
				t.Errorf("set %v merged to %v: ranges overlap or touch", set, w.uids)
			}
		}
	}
}
