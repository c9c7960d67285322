package stress

import (
	"fmt"
	"slices"
)

// view is what one session knows of its selected mailbox, built only from
// what the server told it: the UID of every message by sequence number
// (0 while the client has not learned it yet), and what it must be told
// next. Every untagged response is checked against it before it is
// applied; a response that cannot be right for any state the server could
// be in is an inconsistency.
type view struct {
	mailbox  string
	readOnly bool

	uids    []uint32        // index = sequence number - 1
	present map[uint32]bool // the UIDs learned and not expunged (uids' non-zero entries)
	// lastKnown is at least the index of the last learned entry of uids
	// (-1: none), so that checking a FETCH of 1:* against the messages
	// after it is O(1), not O(mailbox).
	lastKnown int
	modseqs   map[uint32]uint64
	gone      map[uint32]bool // expunged in this view: UIDs never come back

	// uidNext is SELECT's UIDNEXT: every message there before the select
	// has a lower UID, every later one a higher.
	uidNext   uint32
	selected  int    // messages at SELECT: later sequence numbers are arrivals
	maxUID    uint32 // the highest UID this view has learned
	highestMS uint64 // HIGHESTMODSEQ from SELECT (CONDSTORE)

	// mustGo are UIDs the server must announce as expunged by the end of
	// the next NOOP: it left them out of a FETCH or SEARCH (they were
	// expunged meanwhile), or this session expunged them. Value: why.
	mustGo map[uint32]string
	// unconfirmed are UIDs whose STORE of the client's keyword was not
	// confirmed by its answer (why, or "" after .SILENT): settled at the
	// next NOOP.
	unconfirmed map[uint32]string
	// lost: a VANISHED named a UID the view could not place; nothing is
	// checked until the client selects again.
	lost bool
	// unanswered counts the FETCHes and NOOPs since the view last placed
	// a message (learned counts those placed; learnedBefore is learned
	// when the count started).
	unanswered, learned, learnedBefore int
}

func newView(mailbox string, readOnly bool) *view {
	return &view{mailbox: mailbox, readOnly: readOnly, present: map[uint32]bool{}, lastKnown: -1, modseqs: map[uint32]uint64{},
		gone: map[uint32]bool{}, mustGo: map[uint32]string{}, unconfirmed: map[uint32]string{}}
}

func (v *view) count() int { return len(v.uids) }

// exists applies "* n EXISTS". RFC 9051 section 7.4.1: "The EXISTS
// response MUST NOT be used to indicate message removal", so n never drops
// below the messages the client has not been told were expunged.
func (v *view) exists(n int) error {
	if n < len(v.uids) {
		return fmt.Errorf("%s: EXISTS %d with %d messages and no EXPUNGE (RFC 9051 7.4.1: EXISTS never announces a removal)", v.mailbox, n, len(v.uids))
	}
	for len(v.uids) < n {
		v.uids = append(v.uids, 0)
	}
	return nil
}

// expunge applies "* n EXPUNGE" (RFC 9051 section 7.5.1: the sequence
// numbers above n go down by one).
func (v *view) expunge(n int) error {
	if n < 1 || n > len(v.uids) {
		return fmt.Errorf("%s: EXPUNGE %d with %d messages", v.mailbox, n, len(v.uids))
	}
	v.forget(n - 1)
	return nil
}

func (v *view) forget(i int) {
	v.drop(v.uids[i])
	v.uids = slices.Delete(v.uids, i, i+1)
	if i < v.selected {
		v.selected--
	}
	if i <= v.lastKnown {
		v.lastKnown--
	}
}

// drop records that uid (0: an unlearned message) is expunged.
func (v *view) drop(u uint32) {
	if u != 0 {
		v.gone[u] = true
		delete(v.present, u)
		delete(v.modseqs, u)
		delete(v.mustGo, u)
	}
}

// vanished applies "* VANISHED uids" (RFC 7162 section 3.2.10): each
// named UID the client knows is removed; one it never learned may be among
// the unknown ones.
func (v *view) vanished(uids []uint32) error {
	// The known ones go in one pass (a VANISHED may name thousands).
	named := make(map[uint32]bool, len(uids))
	for _, u := range uids {
		named[u] = v.present[u]
	}
	kept, selected := v.uids[:0], v.selected
	for i, u := range v.uids {
		if u != 0 && named[u] {
			v.drop(u)
			if i < v.selected {
				selected--
			}
			continue
		}
		kept = append(kept, u)
	}
	v.lastKnown -= len(v.uids) - len(kept)
	v.uids, v.selected = kept, selected
	for _, u := range uids {
		if named[u] {
			continue // placed and removed above
		}
		if v.gone[u] {
			return fmt.Errorf("%s: VANISHED names UID %d a second time", v.mailbox, u)
		}
		// A UID the view never learned: it must be one of the unknown slots,
		// which the client can no longer place. Such a view is resynced.
		if slices.Contains(v.uids, 0) {
			return errResync
		}
		if u < v.uidNext {
			// Expunged before the client could learn it (RFC 7162 allows
			// VANISHED for UIDs the client may not know).
			v.gone[u] = true
			continue
		}
		return fmt.Errorf("%s: VANISHED names UID %d the client was never told of", v.mailbox, u)
	}
	return nil
}

// learn applies the UID of a FETCH response for sequence number n and
// checks it: a sequence number names one UID until an EXPUNGE, UIDs ascend
// with sequence numbers (RFC 9051 section 2.3.1.1), an expunged UID never
// comes back, and messages present at SELECT are below its UIDNEXT while
// later arrivals are at or above it.
func (v *view) learn(n int, uid uint32) error {
	if n < 1 || n > len(v.uids) {
		return fmt.Errorf("%s: FETCH for sequence number %d with %d messages", v.mailbox, n, len(v.uids))
	}
	i := n - 1
	if known := v.uids[i]; known != 0 {
		if known != uid {
			return fmt.Errorf("%s: sequence number %d was UID %d, now FETCH says UID %d without an EXPUNGE between", v.mailbox, n, known, uid)
		}
		return nil
	}
	if v.gone[uid] {
		return fmt.Errorf("%s: UID %d came back after it was expunged", v.mailbox, uid)
	}
	for j := i - 1; j >= 0; j-- {
		if v.uids[j] != 0 {
			if v.uids[j] >= uid {
				return fmt.Errorf("%s: UID %d at sequence number %d is not above UID %d at %d", v.mailbox, uid, n, v.uids[j], j+1)
			}
			break
		}
	}
	for j := i + 1; j <= v.lastKnown && j < len(v.uids); j++ {
		if v.uids[j] != 0 {
			if v.uids[j] <= uid {
				return fmt.Errorf("%s: UID %d at sequence number %d is not below UID %d at %d", v.mailbox, uid, n, v.uids[j], j+1)
			}
			break
		}
	}
	if n <= v.selected && v.uidNext != 0 && uid >= v.uidNext {
		return fmt.Errorf("%s: UID %d was there at SELECT but is not below its UIDNEXT %d", v.mailbox, uid, v.uidNext)
	}
	if n > v.selected && uid < v.uidNext {
		return fmt.Errorf("%s: UID %d arrived after SELECT but is below its UIDNEXT %d", v.mailbox, uid, v.uidNext)
	}
	v.uids[i] = uid
	v.present[uid] = true
	v.lastKnown = max(v.lastKnown, i)
	v.maxUID = max(v.maxUID, uid)
	v.learned++
	return nil
}

// modseq checks a message's MODSEQ (RFC 7162 section 3.1.4: it only
// grows) and records it.
func (v *view) modseq(uid uint32, ms uint64) error {
	if ms == 0 {
		return fmt.Errorf("%s: UID %d has MODSEQ 0 (RFC 7162 3.1: mod-sequence values are positive)", v.mailbox, uid)
	}
	if prev := v.modseqs[uid]; ms < prev {
		return fmt.Errorf("%s: UID %d MODSEQ went back from %d to %d", v.mailbox, uid, prev, ms)
	}
	v.modseqs[uid] = ms
	return nil
}

// has reports whether uid is in the view (learned, not expunged).
func (v *view) has(uid uint32) bool { return v.present[uid] }

// knownUIDs returns the UIDs the view has learned, ascending.
func (v *view) knownUIDs() []uint32 {
	out := make([]uint32, 0, len(v.uids))
	for _, u := range v.uids {
		if u != 0 {
			out = append(out, u)
		}
	}
	return out
}

func (v *view) unknown() int {
	n := 0
	for _, u := range v.uids {
		if u == 0 {
			n++
		}
	}
	return n
}
