package imapd

// RFC 5465 NOTIFY. The account hub's watch, which sees every change of the
// account through any pod, is the source: for a mailbox that is not
// selected, each revision's changes become at most one pending STATUS per
// mailbox (the mailbox record the same revision carries has the counters:
// no storage read) and a LIST per mailbox created, deleted, renamed or
// (un)subscribed. The session writes them between commands (Listen), in
// IDLE and after NOOP; the selected mailbox keeps its tracker, which the
// session's selected filter steers (session.go).
//
// Memory: a session without NOTIFY holds nothing more. With NOTIFY it holds
// its filters and what is pending, bounded by notifyMaxPending (then it
// overflows, section 5.8). The hub keeps, per account with NOTIFY sessions,
// the mailboxes' names and subscriptions (to tell a rename's old name and
// a subscription change): O(mailboxes) per account and pod, not per session.

import (
	"context"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
)

// notifyMaxPending bounds a session's pending notifications; past it the
// session gets NOTIFICATIONOVERFLOW and NOTIFY is off (RFC 5465 5.8).
const notifyMaxPending = 2000

// notifyState is one session's NOTIFY: what it asked for and what waits to
// be written. The hub's watch goroutine queues, the session drains.
type notifyState struct {
	spec *imapconn.NotifySpec // never changes; NOTIFY SET makes a new state

	mu         sync.Mutex
	selectedID string                        // no STATUS for the selected mailbox (sections 5.2, 5.3)
	statuses   map[string]*storagev1.Mailbox // by mailbox id, the latest record (nil: read it)
	order      []string                      // statuses' ids, first queued first
	lists      []pendingList
	overflow   bool
	wake       func()
	own        []ownMark // changes the session made, not to be told (ownchanges.go)
}

// pendingList is a LIST notification and the change it tells.
type pendingList struct {
	kind ownKind
	data *imap.ListData
}

func newNotifyState(spec *imapconn.NotifySpec) *notifyState {
	return &notifyState{spec: spec, statuses: map[string]*storagev1.Mailbox{}}
}

// eventsFor returns the events the client asked for in a mailbox that is
// not selected: those of the first event group whose filter names it (RFC
// 5465 leaves overlaps open; in order, a narrow group can come before a
// wide one, e.g. (MAILBOXES Junk NONE) (PERSONAL (...))).
func (ns *notifyState) eventsFor(name string, subscribed bool) imapconn.NotifyEvent {
	for _, g := range ns.spec.Groups {
		if matchNotifyFilter(g, name, subscribed) {
			return g.Events
		}
	}
	return 0
}

// matchNotifyFilter reports whether g's filter names the mailbox (RFC 5465
// section 6). One personal namespace holds every mailbox; mail is delivered
// to INBOX only, which makes it the one "inboxes" mailbox.
func matchNotifyFilter(g imapconn.NotifyGroup, name string, subscribed bool) bool {
	switch g.Filter {
	case imapconn.NotifyPersonal:
		return true
	case imapconn.NotifyInboxes:
		return name == "INBOX"
	case imapconn.NotifySubscribed:
		return subscribed
	case imapconn.NotifySubtree:
		for _, root := range g.Mailboxes {
			if name == root || strings.HasPrefix(name, root+string(delim)) {
				return true
			}
		}
	case imapconn.NotifyMailboxes:
		for _, n := range g.Mailboxes {
			if name == n {
				return true
			}
		}
	}
	return false
}

// wantsStatus reports whether events include a message event.
func wantsStatus(events imapconn.NotifyEvent) bool {
	return events&(imapconn.NotifyMessageNew|imapconn.NotifyMessageExpunge|imapconn.NotifyFlagChange) != 0
}

// queueStatus records that mb (the record after the change, nil if the
// revision carried none) had message events. Caller: the hub, which wakes.
func (ns *notifyState) queueStatus(id string, mb *storagev1.Mailbox) bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.overflow || id == ns.selectedID {
		return false
	}
	if ns.ownStatusLocked(id, mb) {
		if _, ok := ns.statuses[id]; ok {
			ns.statuses[id] = mb // another client's change waits: with the latest counters
		}
		return false
	}
	if _, ok := ns.statuses[id]; !ok {
		if len(ns.order)+len(ns.lists) >= notifyMaxPending {
			ns.overflowLocked()
			return true
		}
		ns.order = append(ns.order, id)
	}
	ns.statuses[id] = mb
	return true
}

func (ns *notifyState) queueList(kind ownKind, data *imap.ListData) bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.overflow || ns.ownListLocked(kind, data) {
		return false
	}
	if len(ns.order)+len(ns.lists) >= notifyMaxPending {
		ns.overflowLocked()
		return true
	}
	ns.lists = append(ns.lists, pendingList{kind, data})
	return true
}

// overflowLocked drops what is pending: the client is told, once.
func (ns *notifyState) overflowLocked() {
	ns.overflow = true
	ns.statuses, ns.order, ns.lists = nil, nil, nil
}

func (ns *notifyState) callWake() {
	ns.mu.Lock()
	fn := ns.wake
	ns.mu.Unlock()
	if fn != nil {
		fn()
	}
}

// setWake makes the state call fn (which must not block) whenever
// something is queued; if something is pending already, at once.
func (ns *notifyState) setWake(fn func()) {
	ns.mu.Lock()
	ns.wake = fn
	pending := ns.overflow || len(ns.order) > 0 || len(ns.lists) > 0
	ns.mu.Unlock()
	if fn != nil && pending {
		fn()
	}
}

func (ns *notifyState) setSelected(id string) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.selectedID = id
	if _, ok := ns.statuses[id]; ok {
		delete(ns.statuses, id)
		ns.order = deleteString(ns.order, id)
	}
}

// take returns what is pending and forgets it.
func (ns *notifyState) take() (lists []*imap.ListData, order []string, statuses map[string]*storagev1.Mailbox, overflow bool) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for _, l := range ns.lists {
		lists = append(lists, l.data)
	}
	order, statuses, overflow = ns.order, ns.statuses, ns.overflow
	ns.lists, ns.order = nil, nil
	if len(order) > 0 {
		ns.statuses = map[string]*storagev1.Mailbox{}
	}
	return
}

func deleteString(list []string, s string) []string {
	for i, x := range list {
		if x == s {
			return append(list[:i], list[i+1:]...)
		}
	}
	return list
}

// dirEntry is what the hub remembers of a mailbox for NOTIFY.
type dirEntry struct {
	name       string
	subscribed bool
}

// addNotifier registers ns with the account's watch, loading the mailbox
// directory first if no session of the account had NOTIFY before.
func (a *accountHub) addNotifier(ctx context.Context, ns *notifyState) error {
	for {
		a.notifyMu.Lock()
		switch {
		case a.dir != nil:
			a.notifiers[ns] = struct{}{}
			a.notifyMu.Unlock()
			return nil
		case a.dirLoading != nil:
			ch := a.dirLoading
			a.notifyMu.Unlock()
			select {
			case <-ch:
				continue // loaded, or failed: look again
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		// This session loads it; changes meanwhile are buffered.
		ch := make(chan struct{})
		a.dirLoading = ch
		a.notifyMu.Unlock()
		_, err := a.loadDir(ctx)
		close(ch)
		if err != nil {
			return err
		}
	}
}

func (a *accountHub) removeNotifier(ns *notifyState) {
	a.notifyMu.Lock()
	defer a.notifyMu.Unlock()
	delete(a.notifiers, ns)
	if len(a.notifiers) == 0 && a.dirLoading == nil {
		a.dir = nil // the next NOTIFY loads it afresh
	}
}

// loadDir reads the account's mailboxes into the directory, then applies
// the changes the watch brought meanwhile (silently: they happened before
// any session could ask for them).
func (a *accountHub) loadDir(ctx context.Context) ([]*storagev1.Mailbox, error) {
	resp, err := a.hub.store.Mailboxes.ListMailboxes(a.storageCtx(ctx), &storagev1.ListMailboxesRequest{AccountId: a.id})
	a.notifyMu.Lock()
	defer a.notifyMu.Unlock()
	buffered := a.dirBuffered
	a.dirLoading, a.dirBuffered = nil, nil
	if err != nil {
		return nil, err
	}
	dir := make(map[string]dirEntry, len(resp.Mailboxes))
	for _, mb := range resp.Mailboxes {
		dir[mb.Id] = dirEntry{mb.Name, mb.Subscribed}
	}
	for _, c := range buffered {
		if c.Kind == storagev1.Change_KIND_MAILBOX_DELETED {
			delete(dir, c.MailboxId)
		} else if c.Mailbox != nil {
			dir[c.MailboxId] = dirEntry{c.Mailbox.Name, c.Mailbox.Subscribed}
		}
	}
	a.dir = dir
	return resp.Mailboxes, nil
}

// notifyResync tells the NOTIFY sessions the STATUS of every mailbox after
// the watch lost history (compaction): what changed meanwhile is unknown,
// the counters are known.
func (a *accountHub) notifyResync(mailboxes []*storagev1.Mailbox) {
	a.notifyMu.Lock()
	defer a.notifyMu.Unlock()
	for ns := range a.notifiers {
		woke := false
		for _, mb := range mailboxes {
			ev := &mailboxEvent{id: mb.Id, events: imapconn.NotifyMessageNew | imapconn.NotifyMessageExpunge | imapconn.NotifyFlagChange,
				record: mb, before: dirEntry{mb.Name, mb.Subscribed}}
			woke = ns.offer(ev) || woke
		}
		if woke {
			ns.callWake()
		}
	}
}

// mailboxEvent is one revision's summary of a mailbox for NOTIFY.
type mailboxEvent struct {
	id      string
	events  imapconn.NotifyEvent // message events
	record  *storagev1.Mailbox   // the record after the revision, if it carried one
	created bool
	deleted bool
	oldName string // renamed from
	subChg  bool   // subscription changed
	before  dirEntry
}

// notifyChanges turns one revision's changes into the notifications of the
// sessions that asked for them. It runs on the watch goroutine and does
// memory work only.
func (a *accountHub) notifyChanges(changes []*storagev1.Change) {
	a.notifyMu.Lock()
	defer a.notifyMu.Unlock()
	if a.dirLoading != nil {
		for _, c := range changes {
			if c.Mailbox != nil {
				a.dirBuffered = append(a.dirBuffered, c)
			}
		}
		return
	}
	if a.dir == nil {
		return // no session of the account has NOTIFY
	}
	byID := map[string]*mailboxEvent{}
	var order []*mailboxEvent
	for _, c := range changes {
		ev := byID[c.MailboxId]
		if ev == nil {
			ev = &mailboxEvent{id: c.MailboxId, before: a.dir[c.MailboxId]}
			byID[c.MailboxId] = ev
			order = append(order, ev)
		}
		switch c.Kind {
		case storagev1.Change_KIND_MESSAGE_ADDED:
			ev.events |= imapconn.NotifyMessageNew
		case storagev1.Change_KIND_MESSAGE_EXPUNGED:
			ev.events |= imapconn.NotifyMessageExpunge
		case storagev1.Change_KIND_FLAGS_CHANGED:
			ev.events |= imapconn.NotifyFlagChange
		case storagev1.Change_KIND_MAILBOX_CREATED, storagev1.Change_KIND_MAILBOX_UPDATED:
			if c.Mailbox == nil {
				continue
			}
			old, had := a.dir[c.MailboxId]
			now := dirEntry{c.Mailbox.Name, c.Mailbox.Subscribed}
			a.dir[c.MailboxId] = now
			ev.record = c.Mailbox
			switch {
			case !had:
				ev.created = true
			case old.name != now.name && ev.oldName == "":
				ev.oldName = old.name
			}
			if had && old.subscribed != now.subscribed {
				ev.subChg = !ev.subChg
			}
		case storagev1.Change_KIND_MAILBOX_DELETED:
			if old, had := a.dir[c.MailboxId]; had {
				delete(a.dir, c.MailboxId)
				ev.deleted, ev.before = true, old
			}
		}
	}
	if len(a.notifiers) == 0 {
		return
	}
	for ns := range a.notifiers {
		woke := false
		for _, ev := range order {
			woke = ns.offer(ev) || woke
		}
		if woke {
			ns.callWake()
		}
	}
}

// offer queues what ev means for the session; it reports whether it
// queued anything.
func (ns *notifyState) offer(ev *mailboxEvent) bool {
	queued := false
	list := func(kind ownKind, data *imap.ListData) {
		queued = ns.queueList(kind, data) || queued
	}
	switch {
	case ev.deleted:
		// Section 5.4: a deleted mailbox is listed \NonExistent.
		if !ev.created && ns.eventsFor(ev.before.name, ev.before.subscribed)&imapconn.NotifyMailboxName != 0 {
			list(ownDeleted, &imap.ListData{Mailbox: ev.before.name, Delim: delim, Attrs: []imap.MailboxAttr{imap.MailboxAttrNonExistent}})
		}
		return queued
	case ev.record == nil && ev.before.name == "":
		return false // not a mailbox the directory knows (one being deleted)
	}
	name, subscribed := ev.before.name, ev.before.subscribed
	if ev.record != nil {
		name, subscribed = ev.record.Name, ev.record.Subscribed
	}
	events := ns.eventsFor(name, subscribed)
	if ev.created && events&imapconn.NotifyMailboxName != 0 {
		list(ownCreated, &imap.ListData{Mailbox: name, Delim: delim})
	}
	if ev.oldName != "" {
		// Section 5.4: the new name with OLDNAME; for a filter that named
		// either name.
		if (events|ns.eventsFor(ev.oldName, ev.before.subscribed))&imapconn.NotifyMailboxName != 0 {
			list(ownRenamed, &imap.ListData{Mailbox: name, Delim: delim, OldName: ev.oldName})
		}
	}
	if ev.subChg {
		// Section 5.5: LIST with \Subscribed while subscribed, without it
		// once not; for SUBSCRIBED, the mailbox was named either before
		// or after.
		if (events|ns.eventsFor(name, !subscribed))&imapconn.NotifySubscriptionChange != 0 {
			data, kind := &imap.ListData{Mailbox: name, Delim: delim}, ownUnsubscribed
			if subscribed {
				data.Attrs, kind = []imap.MailboxAttr{imap.MailboxAttrSubscribed}, ownSubscribed
			}
			list(kind, data)
		}
	}
	if ev.events&events != 0 && wantsStatus(events) {
		queued = ns.queueStatus(ev.id, ev.record) || queued
	}
	return queued
}

// notifyStatusData is the STATUS that sections 5.2 to 5.4 send for a
// mailbox that is not selected (the writer keeps HIGHESTMODSEQ for a
// client that enabled CONDSTORE only).
func notifyStatusData(mb *storagev1.Mailbox) *imap.StatusData {
	return statusData(mb, &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true, HighestModSeq: true})
}

// SetNotify implements imapconn.Notifier.
func (s *session) SetNotify(w *imapconn.UpdateWriter, spec *imapconn.NotifySpec) error {
	if spec == nil {
		s.stopNotify()
		return nil
	}
	ns := newNotifyState(spec)
	if v := s.selected; v != nil {
		ns.selectedID = v.state.id
	}
	ctx, cancel := s.ctx()
	defer cancel()
	// The new state first: on failure the old one stays in force, and the
	// account's directory is not dropped and read again in between.
	if err := s.acct.addNotifier(ctx, ns); err != nil {
		return mapError(err)
	}
	s.stopNotify()
	s.notify = ns
	if v := s.selected; v != nil {
		v.newFetched = v.maxAnnouncedUID()
	}
	if !spec.Status {
		return nil
	}
	// Section 3.1: the STATUS of every mailbox the filters name that has
	// message events, but the selected one.
	resp, err := s.srv.store.Mailboxes.ListMailboxes(ctx, &storagev1.ListMailboxesRequest{AccountId: s.account.Id})
	if err != nil {
		return mapError(err)
	}
	for _, mb := range resp.Mailboxes {
		if mb.Id == ns.selectedID || !wantsStatus(ns.eventsFor(mb.Name, mb.Subscribed)) {
			continue
		}
		if err := w.WriteNotifyStatus(notifyStatusData(mb)); err != nil {
			return err
		}
	}
	return nil
}

// stopNotify drops the session's NOTIFY (logout, overflow).
func (s *session) stopNotify() {
	if s.notify != nil {
		if s.acct != nil {
			s.acct.removeNotifier(s.notify)
		}
		s.notify = nil
	}
}

// selectedGroup returns the NOTIFY event group of the selected mailbox, or
// nil when the selected mailbox behaves as without NOTIFY.
func (s *session) selectedGroup() *imapconn.NotifyGroup {
	if s.notify == nil {
		return nil
	}
	return s.notify.spec.Selected()
}

// writeNotifications writes the pending notifications of mailboxes that are
// not selected: the LISTs, then the STATUSes (with the names renames gave).
func (s *session) writeNotifications(w *imapconn.UpdateWriter) error {
	ns := s.notify
	if ns == nil {
		return nil
	}
	lists, order, statuses, overflow := ns.take()
	if overflow {
		s.stopNotify()
		return w.WriteNotificationOverflow()
	}
	for _, data := range lists {
		if err := w.WriteNotifyList(data); err != nil {
			return err
		}
	}
	for _, id := range order {
		mb := statuses[id]
		if s.selected != nil && s.selected.state.id == id {
			continue
		}
		if mb == nil {
			// The revision carried no record: read it.
			ctx, cancel := s.ctx()
			resp, err := s.srv.store.Mailboxes.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: s.account.Id, MailboxId: id})
			cancel()
			if err != nil {
				continue // gone meanwhile
			}
			mb = resp.Mailbox
		}
		if err := w.WriteNotifyStatus(notifyStatusData(mb)); err != nil {
			return err
		}
	}
	return nil
}

// selectedWriter is w as the selected filter wants it: without unsolicited
// FETCH FLAGS when FlagChange was not asked for (section 5.1).
func (s *session) selectedWriter(w *imapconn.UpdateWriter) *imapconn.UpdateWriter {
	if g := s.selectedGroup(); g != nil && g.Events&imapconn.NotifyFlagChange == 0 {
		return w.WithoutFlags()
	}
	return w
}

// fetchNew writes the FETCH of MessageNew's fetch-att list for the messages
// of the selected mailbox announced since the last time (section 5.2).
func (s *session) fetchNew(w *imapconn.UpdateWriter) error {
	g, v := s.selectedGroup(), s.selected
	if g == nil || g.Fetch == nil || v == nil || v.tracker.Closed() {
		return nil
	}
	top := v.maxAnnouncedUID()
	if top <= v.newFetched {
		return nil
	}
	var set imap.UIDSet
	set.AddRange(imap.UID(v.newFetched+1), imap.UID(top))
	v.newFetched = top
	opts := *g.Fetch.Options
	if err := s.Fetch(w.FetchWriter(g.Fetch), set, &opts); err != nil {
		return err
	}
	return w.Flush()
}

// maxAnnouncedUID is the highest UID of a message the client has been told
// of (0 if none).
func (v *view) maxAnnouncedUID() uint32 {
	m := v.state
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.entries); i > 0; i-- {
		if v.tracker.EncodeSeqNum(uint32(i)) != 0 {
			return m.entries[i-1].uid
		}
	}
	return 0
}

// Listen implements imapconn.Notifier: between commands, the selected
// filter's events (SELECTED: expunges too; SELECTED-DELAYED: expunges wait
// for a command that may report them, section 6.2) and the other
// mailboxes' notifications.
func (s *session) Listen(w *imapconn.UpdateWriter, wake func()) (update, stop func() error) {
	var t *imapconn.SessionTracker
	g := s.selectedGroup()
	if s.selected != nil && g != nil && g.Events != 0 {
		t = s.selected.tracker
	}
	update = func() error {
		if t != nil {
			if err := t.Poll(s.selectedWriter(w), g.Filter == imapconn.NotifySelected); err != nil {
				return err
			}
			if err := s.fetchNew(w); err != nil {
				return err
			}
		}
		return s.writeNotifications(w)
	}
	ns := s.notify
	stop = func() error {
		if t != nil {
			t.SetWake(nil)
		}
		if ns != nil {
			ns.setWake(nil)
		}
		return nil
	}
	if t != nil {
		t.SetWake(wake)
	}
	if ns != nil {
		ns.setWake(wake)
	}
	return update, stop
}
