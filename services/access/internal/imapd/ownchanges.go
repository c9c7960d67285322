package imapd

// RFC 5465 section 5: "The server SHOULD omit notifying the client if the
// event is caused by this client." A NOTIFY session marks each change it
// makes once the storage tier has committed it; the watch's notification
// of that change is then dropped, whether it was queued already (the watch
// can be quicker than the command's return) or comes later. A mark that
// matches nothing (a SUBSCRIBE that changed nothing has no event) lapses
// after ownMarkTTL, so it cannot hide another client's change for long.
//
// Marked: CREATE, DELETE, RENAME (with the children it renames),
// SUBSCRIBE, UNSUBSCRIBE, and APPEND to a mailbox that is not selected (its
// revision is known by the modseq the append answered). A COPY or MOVE
// answers no modseq of its destination: its STATUS is told.

import (
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

type ownKind int

const (
	ownStatus ownKind = iota
	ownCreated
	ownDeleted
	ownRenamed
	ownSubscribed
	ownUnsubscribed
)

// ownMark is one change the session made.
type ownMark struct {
	kind    ownKind
	id      string // ownStatus: the mailbox
	modseq  uint64 // ownStatus: its HIGHESTMODSEQ after the change
	name    string // the mailbox (a rename's new name)
	oldName string // a rename's old name
	at      time.Time
}

const (
	ownMarkTTL = 5 * time.Second
	ownMarkMax = 32
)

// matchesList reports whether the LIST notification of kind tells m's
// change. A rename's mark covers the children it moved along.
func (m ownMark) matchesList(kind ownKind, l *imap.ListData) bool {
	if m.kind != kind {
		return false
	}
	if kind != ownRenamed {
		return l.Mailbox == m.name
	}
	return l.OldName == m.oldName && l.Mailbox == m.name ||
		strings.HasPrefix(l.OldName, m.oldName+string(delim)) && strings.HasPrefix(l.Mailbox, m.name+string(delim))
}

// markOwn records a change the session committed, or drops its
// notification if the watch queued it already.
func (ns *notifyState) markOwn(m ownMark) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if m.kind == ownStatus {
		if mb, ok := ns.statuses[m.id]; ok && mb != nil && mb.HighestModseq == m.modseq {
			delete(ns.statuses, m.id)
			ns.order = deleteString(ns.order, m.id)
			return
		}
	} else {
		kept := ns.lists[:0]
		found := false
		for _, l := range ns.lists {
			if m.matchesList(l.kind, l.data) && (!found || m.kind == ownRenamed) {
				found = true
				continue
			}
			kept = append(kept, l)
		}
		ns.lists = kept
		if found && m.kind != ownRenamed {
			return
		}
	}
	m.at = time.Now()
	ns.own = append(ns.own, m)
	if len(ns.own) > ownMarkMax {
		ns.own = ns.own[len(ns.own)-ownMarkMax:]
	}
}

// ownListLocked reports whether a LIST notification tells the session's own
// change (and uses the mark up, but a rename's, which covers children).
func (ns *notifyState) ownListLocked(kind ownKind, l *imap.ListData) bool {
	return ns.ownLocked(func(m ownMark) bool { return m.matchesList(kind, l) })
}

// ownStatusLocked reports whether a STATUS notification tells the session's
// own APPEND (the revision's record is at the modseq the APPEND answered).
func (ns *notifyState) ownStatusLocked(id string, mb *storagev1.Mailbox) bool {
	if mb == nil {
		return false
	}
	return ns.ownLocked(func(m ownMark) bool { return m.kind == ownStatus && m.id == id && m.modseq == mb.HighestModseq })
}

func (ns *notifyState) ownLocked(match func(ownMark) bool) bool {
	if len(ns.own) == 0 {
		return false
	}
	now := time.Now()
	kept := ns.own[:0]
	hit := false
	for _, m := range ns.own {
		switch {
		case now.Sub(m.at) > ownMarkTTL:
			continue // lapsed
		case !hit && match(m):
			hit = true
			if m.kind != ownRenamed {
				continue // used up
			}
		}
		kept = append(kept, m)
	}
	ns.own = kept
	return hit
}

// markOwn records a change the session made (nothing without NOTIFY).
func (s *session) markOwn(m ownMark) {
	if s.notify != nil {
		s.notify.markOwn(m)
	}
}
