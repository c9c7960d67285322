package imapd

import (
	"testing"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
)

const msgEvents = imapconn.NotifyMessageNew | imapconn.NotifyMessageExpunge

func specOf(groups ...imapconn.NotifyGroup) *imapconn.NotifySpec {
	return &imapconn.NotifySpec{Groups: groups}
}

// RFC 5465 section 6: which mailboxes each filter names; the first group
// that names a mailbox decides.
func TestNotifyFilters(t *testing.T) {
	ns := newNotifyState(specOf(
		imapconn.NotifyGroup{Filter: imapconn.NotifySelected, Events: msgEvents},
		imapconn.NotifyGroup{Filter: imapconn.NotifyMailboxes, Mailboxes: []string{"Junk"}},
		imapconn.NotifyGroup{Filter: imapconn.NotifySubtree, Mailboxes: []string{"Work"}, Events: imapconn.NotifyMailboxName},
		imapconn.NotifyGroup{Filter: imapconn.NotifyInboxes, Events: msgEvents | imapconn.NotifyFlagChange},
		imapconn.NotifyGroup{Filter: imapconn.NotifySubscribed, Events: imapconn.NotifySubscriptionChange},
	))
	for _, tc := range []struct {
		name       string
		subscribed bool
		want       imapconn.NotifyEvent
	}{
		{"Junk", true, 0}, // (MAILBOXES Junk NONE) comes first
		{"Work", false, imapconn.NotifyMailboxName},
		{"Work/Plans", true, imapconn.NotifyMailboxName},
		{"Workshop", false, 0}, // not under Work
		{"INBOX", true, msgEvents | imapconn.NotifyFlagChange},
		{"Sent", true, imapconn.NotifySubscriptionChange},
		{"Sent", false, 0},
	} {
		if got := ns.eventsFor(tc.name, tc.subscribed); got != tc.want {
			t.Errorf("%s (subscribed %v): %v, want %v", tc.name, tc.subscribed, got, tc.want)
		}
	}
}

// A mailbox's STATUS is pending once, with the latest record; none for the
// selected mailbox (RFC 5465 sections 5.2, 5.3).
func TestNotifyStatusCoalesces(t *testing.T) {
	ns := newNotifyState(specOf(imapconn.NotifyGroup{Filter: imapconn.NotifyPersonal, Events: msgEvents}))
	woken := 0
	ns.setWake(func() { woken++ })
	if woken != 0 {
		t.Fatal("woken with nothing pending")
	}
	for i, m := range []uint32{1, 2, 3} {
		rec := &storagev1.Mailbox{Id: "a", Name: "A", Messages: m}
		if !ns.offer(&mailboxEvent{id: "a", events: imapconn.NotifyMessageNew, record: rec}) {
			t.Fatalf("offer %d queued nothing", i)
		}
	}
	ns.offer(&mailboxEvent{id: "b", events: imapconn.NotifyFlagChange, record: &storagev1.Mailbox{Id: "b", Name: "B"}}) // no FlagChange asked
	ns.offer(&mailboxEvent{id: "c", events: imapconn.NotifyMessageExpunge, record: &storagev1.Mailbox{Id: "c", Name: "C"}})
	ns.setSelected("c")
	lists, order, statuses, overflow := ns.take()
	if len(lists) != 0 || overflow || len(order) != 1 || order[0] != "a" || statuses["a"].Messages != 3 {
		t.Fatalf("pending %v %v %v %v", lists, order, statuses, overflow)
	}
	if ns.offer(&mailboxEvent{id: "c", events: imapconn.NotifyMessageNew, record: &storagev1.Mailbox{Id: "c", Name: "C"}}) {
		t.Fatal("queued a STATUS of the selected mailbox")
	}
	if _, order, _, _ := ns.take(); len(order) != 0 {
		t.Fatalf("pending after take: %v", order)
	}
}

// RFC 5465 sections 5.4 and 5.5: LIST for created, renamed (OLDNAME),
// deleted (\NonExistent) and (un)subscribed mailboxes.
func TestNotifyMailboxEvents(t *testing.T) {
	ns := newNotifyState(specOf(imapconn.NotifyGroup{Filter: imapconn.NotifyPersonal, Events: imapconn.NotifyMailboxName | imapconn.NotifySubscriptionChange}))
	ns.offer(&mailboxEvent{id: "x", created: true, record: &storagev1.Mailbox{Id: "x", Name: "New", Subscribed: true}})
	ns.offer(&mailboxEvent{id: "x", oldName: "New", before: dirEntry{"New", true}, record: &storagev1.Mailbox{Id: "x", Name: "Newer", Subscribed: true}})
	ns.offer(&mailboxEvent{id: "x", subChg: true, before: dirEntry{"Newer", true}, record: &storagev1.Mailbox{Id: "x", Name: "Newer"}})
	ns.offer(&mailboxEvent{id: "x", deleted: true, before: dirEntry{"Newer", false}})
	// Message events without MessageNew asked: nothing.
	ns.offer(&mailboxEvent{id: "y", events: imapconn.NotifyMessageNew, record: &storagev1.Mailbox{Id: "y", Name: "Y"}})
	lists, order, _, _ := ns.take()
	if len(order) != 0 || len(lists) != 4 {
		t.Fatalf("lists %v, statuses %v", lists, order)
	}
	if l := lists[0]; l.Mailbox != "New" || len(l.Attrs) != 0 || l.OldName != "" {
		t.Errorf("created: %+v", l)
	}
	if l := lists[1]; l.Mailbox != "Newer" || l.OldName != "New" {
		t.Errorf("renamed: %+v", l)
	}
	if l := lists[2]; l.Mailbox != "Newer" || len(l.Attrs) != 0 {
		t.Errorf("unsubscribed: %+v", l)
	}
	if l := lists[3]; l.Mailbox != "Newer" || len(l.Attrs) != 1 || l.Attrs[0] != `\NonExistent` {
		t.Errorf("deleted: %+v", l)
	}
}

// Past notifyMaxPending the session overflows (RFC 5465 section 5.8):
// nothing is kept, and the overflow is told once.
func TestNotifyOverflow(t *testing.T) {
	ns := newNotifyState(specOf(imapconn.NotifyGroup{Filter: imapconn.NotifyPersonal, Events: imapconn.NotifyMailboxName}))
	for i := 0; i < notifyMaxPending+10; i++ {
		ns.offer(&mailboxEvent{id: "x", created: true, record: &storagev1.Mailbox{Id: "x", Name: "N"}})
	}
	lists, _, _, overflow := ns.take()
	if !overflow || len(lists) != 0 {
		t.Fatalf("overflow %v with %d lists", overflow, len(lists))
	}
}

// After the watch lost history, every NOTIFY session is told the STATUS of
// every mailbox its filters ask STATUS for, the selected one aside.
func TestNotifyResync(t *testing.T) {
	ns := newNotifyState(specOf(imapconn.NotifyGroup{Filter: imapconn.NotifyInboxes, Events: msgEvents}))
	other := newNotifyState(specOf(imapconn.NotifyGroup{Filter: imapconn.NotifyPersonal, Events: imapconn.NotifyMailboxName}))
	woken := 0
	ns.setWake(func() { woken++ })
	a := &accountHub{notifiers: map[*notifyState]struct{}{ns: {}, other: {}}}
	a.notifyResync([]*storagev1.Mailbox{{Id: "i", Name: "INBOX", Messages: 7}, {Id: "s", Name: "Sent"}})
	_, order, statuses, _ := ns.take()
	if woken != 1 || len(order) != 1 || statuses["i"].Messages != 7 {
		t.Fatalf("woken %d, pending %v %v", woken, order, statuses)
	}
	if lists, order, _, _ := other.take(); len(lists)+len(order) != 0 {
		t.Fatalf("told a session that asked for no STATUS: %v %v", lists, order)
	}
}

// RFC 5465 section 5: the session's own changes are not told to it,
// whether the watch is quicker than the command or slower; a mark lapses.
func TestNotifyOwnChanges(t *testing.T) {
	ns := newNotifyState(specOf(imapconn.NotifyGroup{Filter: imapconn.NotifyPersonal,
		Events: msgEvents | imapconn.NotifyMailboxName | imapconn.NotifySubscriptionChange}))
	created := func(name string) *mailboxEvent {
		return &mailboxEvent{id: name, created: true, record: &storagev1.Mailbox{Id: name, Name: name}}
	}
	appended := func(id string, modseq uint64) *mailboxEvent {
		return &mailboxEvent{id: id, events: imapconn.NotifyMessageNew, record: &storagev1.Mailbox{Id: id, Name: id, HighestModseq: modseq}}
	}
	// The watch slower than the command.
	ns.markOwn(ownMark{kind: ownCreated, name: "Mine"})
	ns.markOwn(ownMark{kind: ownStatus, id: "s", modseq: 5})
	ns.markOwn(ownMark{kind: ownRenamed, oldName: "Old", name: "New"})
	if ns.offer(created("Mine")) || ns.offer(appended("s", 5)) {
		t.Fatal("own change queued")
	}
	if ns.offer(&mailboxEvent{id: "o", oldName: "Old", before: dirEntry{"Old", true}, record: &storagev1.Mailbox{Id: "o", Name: "New"}}) ||
		ns.offer(&mailboxEvent{id: "c", oldName: "Old/Child", before: dirEntry{"Old/Child", true}, record: &storagev1.Mailbox{Id: "c", Name: "New/Child"}}) {
		t.Fatal("own rename queued")
	}
	// The watch quicker than the command.
	ns.offer(created("Quick"))
	ns.offer(appended("q", 9))
	ns.markOwn(ownMark{kind: ownCreated, name: "Quick"})
	ns.markOwn(ownMark{kind: ownStatus, id: "q", modseq: 9})
	// Others' changes are told; a mark is used once.
	if !ns.offer(created("Mine")) || !ns.offer(appended("s", 6)) {
		t.Fatal("another client's change not queued")
	}
	// Another client's change waiting when the own one comes: the STATUS
	// stays, with the latest counters.
	ns.offer(appended("w", 7))
	ns.markOwn(ownMark{kind: ownStatus, id: "w", modseq: 8})
	ns.offer(appended("w", 8))
	// A lapsed mark hides nothing.
	ns.markOwn(ownMark{kind: ownSubscribed, name: "Sub"})
	ns.mu.Lock()
	ns.own[len(ns.own)-1].at = ns.own[len(ns.own)-1].at.Add(-2 * ownMarkTTL)
	ns.mu.Unlock()
	if !ns.offer(&mailboxEvent{id: "sub", subChg: true, before: dirEntry{"Sub", false}, record: &storagev1.Mailbox{Id: "sub", Name: "Sub", Subscribed: true}}) {
		t.Fatal("a lapsed mark hid a change")
	}
	lists, order, statuses, _ := ns.take()
	if len(lists) != 2 || lists[0].Mailbox != "Mine" || lists[1].Mailbox != "Sub" {
		t.Fatalf("lists %+v", lists)
	}
	if len(order) != 2 || order[0] != "s" || order[1] != "w" || statuses["w"].HighestModseq != 8 {
		t.Fatalf("statuses %v %v", order, statuses)
	}
}
