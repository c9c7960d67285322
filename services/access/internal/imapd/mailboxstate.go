package imapd

import (
	"context"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// entry is one message as a mailbox view needs it in memory.
type entry struct {
	uid   uint32
	flags []string
	// modseq of the flags (CONDSTORE): FETCH MODSEQ and CHANGEDSINCE
	// answer from the view, so a client never gets a modseq newer than
	// the flags it is shown.
	modseq uint64
}

// mailboxState is the pod's shared, watch-fed state of one mailbox.
type mailboxState struct {
	acct *accountHub
	id   string
	refs int // under acct.mu

	ready   chan struct{} // closed when loaded
	loadErr error

	// gate pauses applying watch changes while a session makes a flag change
	// and records it as its own (so .SILENT stays silent and a FETCH that
	// set \Seen does not echo). Lock order: gate, then mu.
	gate sync.Mutex
	own  map[ownChange]*imapconn.SessionTracker

	mu          sync.Mutex
	loaded      bool
	loadRev     int64
	buffered    []batch // changes seen while loading
	uidValidity uint32
	uidNext     uint32
	// recentTo: a session of this pod claimed \Recent up to this UID
	// (exclusive), so no claim below it can get anything (recent.go).
	recentTo uint32
	modseq   uint64
	entries  []entry
	keywords map[string]bool // every keyword a message of the mailbox has had since it was loaded
	deleted  bool
	tracker  *imapconn.MailboxTracker
	notify   chan struct{} // closed and replaced whenever modseq moves
}

// ownChange names one flag change a session made itself.
type ownChange struct {
	uid    uint32
	modseq uint64
}

type batch struct {
	rev     int64
	changes []*storagev1.Change
}

func newMailboxState(a *accountHub, id string) *mailboxState {
	return &mailboxState{acct: a, id: id, ready: make(chan struct{}), notify: make(chan struct{}), own: map[ownChange]*imapconn.SessionTracker{}}
}

func (m *mailboxState) release() {
	a := m.acct
	a.mu.Lock()
	defer a.mu.Unlock()
	m.refs--
	if m.refs == 0 {
		delete(a.mailboxes, m.id)
	}
}

// list reads the whole mailbox index at one revision.
func (m *mailboxState) list(ctx context.Context) (*storagev1.Mailbox, []entry, int64, error) {
	st := m.acct.hub.store
	req := &storagev1.ListMessagesRequest{AccountId: m.acct.id, MailboxId: m.id, Limit: 5000}
	var entries []entry
	for {
		resp, err := st.Messages.ListMessages(ctx, req)
		if err != nil {
			return nil, nil, 0, err
		}
		for _, msg := range resp.Messages {
			entries = append(entries, entry{uid: msg.Uid, flags: msg.Flags, modseq: msg.Modseq})
		}
		if !resp.More {
			return resp.Mailbox, entries, resp.Revision, nil
		}
		req.AfterUid, req.Revision = resp.NextAfterUid, resp.Revision
	}
}

func (m *mailboxState) load() {
	defer close(m.ready)
	ctx, cancel := context.WithTimeout(m.acct.storageCtx(context.Background()), time.Minute)
	defer cancel()
	mb, entries, rev, err := m.list(ctx)
	if err != nil {
		m.loadErr = err
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries, m.loadRev = entries, rev
	m.uidValidity, m.uidNext, m.modseq = mb.UidValidity, mb.UidNext, mb.HighestModseq
	m.tracker = imapconn.NewMailboxTracker(uint32(len(entries)))
	m.keywords = map[string]bool{}
	for _, e := range entries {
		m.noteKeywordsLocked(e.flags)
	}
	m.loaded = true
	for _, b := range m.buffered {
		m.applyLocked(b.rev, b.changes)
	}
	m.buffered = nil
}

// appendLocked adds a new message at the end and queues its EXISTS. Each
// arrival gets its own EXISTS: go-imap's SessionTracker tells which messages
// a client has not been told of yet only when every queued count goes up by
// one, and SEARCH, FETCH and "*" rely on that.
func (m *mailboxState) appendLocked(e entry) {
	m.noteKeywordsLocked(e.flags)
	m.entries = append(m.entries, e)
	m.tracker.QueueNumMessages(uint32(len(m.entries)))
}

// noteKeywordsLocked records keywords the mailbox has not had before and,
// if any, tells every session the new FLAGS and PERMANENTFLAGS (RFC 9051
// 7.3.5: a client must not see a keyword in a FETCH that FLAGS did not
// announce).
func (m *mailboxState) noteKeywordsLocked(flags []string) {
	added := false
	for _, f := range flags {
		if !strings.HasPrefix(f, `\`) && !m.keywords[f] {
			m.keywords[f] = true
			added = true
		}
	}
	if added && m.loaded {
		m.tracker.QueueMailboxFlags(m.mailboxFlagsLocked())
	}
}

// mailboxFlagsLocked is the FLAGS list: the system flags and every keyword.
func (m *mailboxState) mailboxFlagsLocked() []imap.Flag {
	flags := append([]imap.Flag(nil), systemFlags...)
	for k := range m.keywords {
		flags = append(flags, imap.Flag(k))
	}
	sort.Slice(flags, func(i, j int) bool { return flags[i] < flags[j] })
	return flags
}

// index returns the position of uid, or -1.
func (m *mailboxState) index(uid uint32) int {
	i := sort.Search(len(m.entries), func(i int) bool { return m.entries[i].uid >= uid })
	if i < len(m.entries) && m.entries[i].uid == uid {
		return i
	}
	return -1
}

// apply applies the changes of one revision.
func (m *mailboxState) apply(rev int64, changes []*storagev1.Change) {
	m.gate.Lock()
	defer m.gate.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.loaded {
		m.buffered = append(m.buffered, batch{rev, changes})
		return
	}
	m.applyLocked(rev, changes)
}

func (m *mailboxState) applyLocked(rev int64, changes []*storagev1.Change) {
	if rev <= m.loadRev {
		return // already in the listing
	}
	// Expunges are removed from entries together, once per run of them: one
	// by one, each removal would move the rest of the slice, and emptying a
	// 100 000-message mailbox would cost billions of moves.
	var gone []int        // positions in entries, ascending
	var goneModseq uint64 // the lowest modseq of their expunges
	flush := func() {
		if len(gone) == 0 {
			return
		}
		sort.Ints(gone)
		kept := m.entries[:gone[0]]
		for k, pos := range gone {
			// Each EXPUNGE numbers by the view after the ones before it.
			m.tracker.QueueExpungeAt(uint32(pos-k+1), imap.UID(m.entries[pos].uid), goneModseq)
			end := len(m.entries)
			if k+1 < len(gone) {
				end = gone[k+1]
			}
			kept = append(kept, m.entries[pos+1:end]...)
		}
		m.entries = kept
		gone, goneModseq = gone[:0], 0
	}
	removed := map[int]bool{}
	for _, c := range changes {
		if c.Kind != storagev1.Change_KIND_MESSAGE_EXPUNGED {
			flush()
			clear(removed)
		}
		switch c.Kind {
		case storagev1.Change_KIND_MESSAGE_ADDED:
			if n := len(m.entries); n == 0 || c.Uid > m.entries[n-1].uid {
				m.appendLocked(entry{uid: c.Uid, flags: c.Flags, modseq: c.Modseq})
			}
			// UIDNEXT is above every UID there is, whatever order the
			// mailbox's own update comes in.
			m.uidNext = max(m.uidNext, c.Uid+1)
		case storagev1.Change_KIND_FLAGS_CHANGED:
			// A change older than what the state has (a resync's listing
			// was newer) is not applied: modseqs only grow.
			if i := m.index(c.Uid); i >= 0 && (c.Modseq == 0 || c.Modseq >= m.entries[i].modseq) {
				m.noteKeywordsLocked(c.Flags)
				m.entries[i].flags, m.entries[i].modseq = c.Flags, c.Modseq
				key := ownChange{c.Uid, c.Modseq}
				m.tracker.QueueMessageFlags(uint32(i+1), imap.UID(c.Uid), toIMAPFlags(c.Flags), c.Modseq, m.own[key])
				delete(m.own, key)
			}
		case storagev1.Change_KIND_MESSAGE_EXPUNGED:
			if i := m.index(c.Uid); i >= 0 && !removed[i] {
				removed[i] = true
				gone = append(gone, i)
				if goneModseq == 0 || (c.Modseq != 0 && c.Modseq < goneModseq) {
					goneModseq = c.Modseq
				}
			}
		case storagev1.Change_KIND_MAILBOX_UPDATED, storagev1.Change_KIND_MAILBOX_CREATED:
			if c.Mailbox != nil {
				m.uidNext = max(m.uidNext, c.Mailbox.UidNext)
			}
		case storagev1.Change_KIND_MAILBOX_DELETED:
			m.deleted = true
		}
		m.modseq = max(m.modseq, c.Modseq)
	}
	flush()
	for k := range m.own {
		if k.modseq <= m.modseq-min(m.modseq, 1000) {
			delete(m.own, k) // a change that never came back (it changed nothing)
		}
	}
	close(m.notify)
	m.notify = make(chan struct{})
}

// ownFlagChange runs fn (which changes flags through the storage tier) with
// the watch paused for this mailbox, and records the changes it reports as
// made by tracker, which then gets no FETCH update for them.
func (m *mailboxState) ownFlagChange(tracker *imapconn.SessionTracker, fn func() ([]*storagev1.Message, error)) error {
	m.gate.Lock()
	defer m.gate.Unlock()
	msgs, err := fn()
	if err != nil {
		return err
	}
	m.mu.Lock()
	for _, msg := range msgs {
		if msg.Modseq > m.modseq {
			m.own[ownChange{msg.Uid, msg.Modseq}] = tracker
		}
	}
	m.mu.Unlock()
	return nil
}

// resync reloads the mailbox and turns the difference into updates.
func (m *mailboxState) resync(ctx context.Context) error {
	mb, fresh, rev, err := m.list(ctx)
	if err != nil {
		return err
	}
	m.applyListing(mb, fresh, rev)
	return nil
}

// applyListing brings the state up to a listing of the mailbox taken at
// revision rev (resync).
func (m *mailboxState) applyListing(mb *storagev1.Mailbox, fresh []entry, rev int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.loaded {
		return // its load is still running and will see the present
	}
	// The listing is a snapshot: while it was read (seconds, for a large
	// mailbox), the watch may have applied newer changes. Nothing here may
	// take the state back: a message's modseq only grows, and a message
	// missing from the listing was expunged only if it was there when the
	// listing was taken (its UID below the listing's UIDNEXT); one that
	// arrived since is not in it yet.
	freshIdx := map[uint32]int{}
	for i, e := range fresh {
		freshIdx[e.uid] = i
	}
	// Expunges, from the end so that sequence numbers stay right.
	for i := len(m.entries) - 1; i >= 0; i-- {
		uid := m.entries[i].uid
		if _, ok := freshIdx[uid]; !ok && uid < mb.UidNext {
			m.entries = append(m.entries[:i], m.entries[i+1:]...)
			// Expunged at some modseq above what the view had.
			m.tracker.QueueExpungeAt(uint32(i+1), imap.UID(uid), m.modseq+1)
		}
	}
	for i := range m.entries {
		k, ok := freshIdx[m.entries[i].uid]
		if !ok || fresh[k].modseq <= m.entries[i].modseq {
			continue // arrived since the listing, or the state is as new
		}
		fe := fresh[k]
		if !sameStrings(fe.flags, m.entries[i].flags) {
			m.noteKeywordsLocked(fe.flags)
			m.entries[i].flags = fe.flags
			m.tracker.QueueMessageFlags(uint32(i+1), imap.UID(m.entries[i].uid), toIMAPFlags(fe.flags), fe.modseq, nil)
		}
		m.entries[i].modseq = fe.modseq
	}
	last := uint32(0)
	if n := len(m.entries); n > 0 {
		last = m.entries[n-1].uid
	}
	for _, e := range fresh {
		if e.uid > last {
			m.appendLocked(e)
		}
	}
	m.loadRev = max(m.loadRev, rev)
	m.uidNext, m.modseq = max(m.uidNext, mb.UidNext), max(m.modseq, mb.HighestModseq)
	close(m.notify)
	m.notify = make(chan struct{})
}

// waitModseq waits until the state reflects modseq (a change this session
// made), so that the session sees its own writes. After the timeout it gives
// up quietly: the change is committed and will show up with the next update.
func (m *mailboxState) waitModseq(modseq uint64, timeout time.Duration) {
	if !m.reached(modseq, timeout) {
		m.acct.hub.log.Warn("mailbox view lags behind a committed change", "account", m.acct.id, "mailbox", m.id, "modseq", modseq)
	}
}

// reached waits until the state reflects modseq, at most timeout.
func (m *mailboxState) reached(modseq uint64, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		done := m.modseq >= modseq || m.deleted
		ch := m.notify
		m.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

// catchUp makes the state at least as new as mb, which was read from the
// storage tier just before: a SELECT after this session's own COPY into
// the mailbox (or any change another pod acknowledged) must show it, and
// UIDNEXT must be above every UID assigned. The watch feed is normally
// there within milliseconds; if it is not, the mailbox is read again.
func (m *mailboxState) catchUp(ctx context.Context, mb *storagev1.Mailbox) error {
	if m.reached(mb.HighestModseq, 2*time.Second) {
		m.mu.Lock()
		fresh := m.uidNext >= mb.UidNext || m.deleted
		m.mu.Unlock()
		if fresh {
			return nil
		}
	}
	return m.resync(ctx)
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func toIMAPFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, 0, len(flags))
	for _, f := range flags {
		out = append(out, imap.Flag(f))
	}
	return out
}
