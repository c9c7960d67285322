package imapd

import (
	"slices"
	"strconv"
	"testing"

	"github.com/emersion/go-imap/v2"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
)

// A resync's listing is a snapshot, read over seconds for a large mailbox,
// while the watch goes on applying newer changes. Applying it must never
// take the state back: found by the stress tool on 100 000 messages, where
// a SELECT's resync put a message's flags and MODSEQ back to their values
// of the listing (RFC 7162 3.1: a message's mod-sequence only grows, and
// the newer change was never shown again).
func TestApplyListingNeverGoesBack(t *testing.T) {
	m := newMailboxState(nil, "mb")
	m.loaded, m.keywords = true, map[string]bool{}
	m.entries = []entry{
		{uid: 1, flags: nil, modseq: 2},
		{uid: 2, flags: []string{`\Deleted`}, modseq: 10}, // the watch applied this after the listing
		{uid: 3, flags: nil, modseq: 4},                   // expunged before the listing
		{uid: 4, flags: nil, modseq: 5},
		{uid: 5, flags: nil, modseq: 11}, // arrived after the listing
	}
	m.uidNext, m.modseq, m.loadRev = 6, 11, 40
	m.tracker = imapconn.NewMailboxTracker(uint32(len(m.entries)))
	s := m.tracker.NewSession()

	listing := []entry{
		{uid: 1, flags: []string{`\Seen`}, modseq: 7}, // newer than the state: taken
		{uid: 2, flags: nil, modseq: 3},               // older than the state: ignored
		{uid: 4, flags: nil, modseq: 5},
	}
	m.applyListing(&storagev1.Mailbox{UidNext: 5, HighestModseq: 9}, listing, 30)

	var uids []uint32
	for _, e := range m.entries {
		uids = append(uids, e.uid)
	}
	if !slices.Equal(uids, []uint32{1, 2, 4, 5}) {
		t.Fatalf("UIDs after the resync: %v, want 1 2 4 5 (3 expunged; 5 arrived after the listing)", uids)
	}
	if e := m.entries[1]; !slices.Equal(e.flags, []string{`\Deleted`}) || e.modseq != 10 {
		t.Errorf("UID 2 went back to the listing's older state: %v at %d", e.flags, e.modseq)
	}
	if e := m.entries[0]; !slices.Equal(e.flags, []string{`\Seen`}) || e.modseq != 7 {
		t.Errorf("UID 1 did not take the listing's newer state: %v at %d", e.flags, e.modseq)
	}
	if m.uidNext != 6 || m.modseq != 11 || m.loadRev != 40 {
		t.Errorf("uidNext %d, modseq %d, loadRev %d: went back (want 6, 11, 40)", m.uidNext, m.modseq, m.loadRev)
	}
	// The session hears of exactly the two real changes.
	var log []string
	if err := s.Poll(recordSink{&log}, true); err != nil {
		t.Fatal(err)
	}
	if want := []string{"FETCH 1", "EXPUNGE 3"}; !slices.Equal(log, want) {
		t.Errorf("updates %q, want %q", log, want)
	}
}

type recordSink struct{ log *[]string }

func (r recordSink) WriteExpunge(n uint32) error {
	*r.log = append(*r.log, "EXPUNGE "+itoa(n))
	return nil
}
func (r recordSink) WriteNumMessages(uint32) error       { return nil }
func (r recordSink) WriteMailboxFlags([]imap.Flag) error { return nil }
func (r recordSink) WriteMessageFlags(n uint32, _ imap.UID, _ []imap.Flag, _ uint64) error {
	*r.log = append(*r.log, "FETCH "+itoa(n))
	return nil
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
