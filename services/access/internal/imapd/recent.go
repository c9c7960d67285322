package imapd

import (
	"context"
	"strings"

	"github.com/emersion/go-imap/v2"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
)

// recentView is what the IMAP4rev1 \Recent flag (RFC 3501 section 2.3.2)
// means to one session's selected mailbox. The storage tier keeps one
// cutoff per mailbox: UIDs below it belong to the session that claimed
// them (ClaimRecent, a compare-and-swap), so one session, on any pod, gets
// \Recent for a message, as in Dovecot. A SELECT claims what the mailbox
// holds; later arrivals are claimed by the first session that looks (a
// poll, FETCH, SEARCH or STORE with the mailbox selected, or an IDLE as
// they are announced). EXAMINE claims
// nothing (RFC 3501 6.3.2): it shows the unclaimed messages as recent. An
// IMAP4rev2 session (ENABLE IMAP4rev2) neither claims nor shows \Recent,
// which RFC 9051 removed.
type recentView struct {
	claim  bool        // SELECT by an IMAP4rev1 session: it takes the flag
	uids   imap.UIDSet // the UIDs this session claimed
	upTo   uint32      // claimed up to this UID (exclusive)
	cutoff uint32      // EXAMINE: UIDs at or above it are recent (0: none)
}

func (s *session) rev2() bool {
	return s.conn != nil && s.conn.Enabled().Has(imap.CapIMAP4rev2)
}

// beginRecent claims (SELECT) or looks at (EXAMINE) the mailbox's recent
// messages below uidNext. \Recent is advisory: a storage failure shows none.
func (s *session) beginRecent(ctx context.Context, mailboxID string, uidNext uint32, readOnly bool) *recentView {
	rv := &recentView{}
	if s.rev2() {
		return rv
	}
	resp, err := s.srv.store.Mailboxes.ClaimRecent(ctx, &storagev1.ClaimRecentRequest{
		AccountId: s.account.Id, MailboxId: mailboxID, UpToUid: uidNext, Peek: readOnly})
	if err != nil {
		s.log.Warn("claiming \\Recent failed", "mailbox", mailboxID, "err", err)
		return rv
	}
	if readOnly {
		rv.cutoff = resp.FromUid
		return rv
	}
	rv.claim, rv.upTo = true, uidNext
	if resp.ToUid > resp.FromUid {
		rv.uids.AddRange(imap.UID(resp.FromUid), imap.UID(resp.ToUid-1))
	}
	return rv
}

// has reports whether uid is recent to the session.
func (rv *recentView) has(uid uint32) bool {
	if rv == nil {
		return false
	}
	if rv.cutoff > 0 {
		return uid >= rv.cutoff
	}
	return rv.uids.Contains(imap.UID(uid))
}

// countLocked counts the recent messages among entries (the state's lock
// held).
func (rv *recentView) countLocked(entries []entry) uint32 {
	var n uint32
	for _, e := range entries {
		if rv.has(e.uid) {
			n++
		}
	}
	return n
}

// withRecent adds \Recent to a message's flags for an IMAP4rev1 session
// that has it recent.
func (s *session) withRecent(uid uint32, flags []imap.Flag) []imap.Flag {
	if v := s.selected; v != nil && !s.rev2() && v.recent.has(uid) {
		// A copy: the flags may be shared with other sessions' updates.
		return append(append(make([]imap.Flag, 0, len(flags)+1), flags...), "\\Recent")
	}
	return flags
}

// claimArrivals claims the messages that arrived since the session last
// claimed; it reports whether it got any.
func (s *session) claimArrivals() bool {
	v := s.selected
	if v == nil || v.recent == nil || !v.recent.claim || s.rev2() {
		return false
	}
	v.state.mu.Lock()
	next, podClaimed := v.state.uidNext, v.state.recentTo
	v.state.mu.Unlock()
	if next <= podClaimed {
		// Another session of this pod claimed them (the storage
		// tier's cutoff only grows): nothing to ask for. Sessions that
		// idle together make one claim per arrival, not one each.
		v.recent.upTo = max(v.recent.upTo, next)
	}
	if next <= v.recent.upTo {
		return false
	}
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.srv.store.Mailboxes.ClaimRecent(ctx, &storagev1.ClaimRecentRequest{
		AccountId: s.account.Id, MailboxId: v.state.id, UpToUid: next})
	if err != nil {
		s.log.Warn("claiming \\Recent failed", "mailbox", v.state.id, "err", err)
		return false
	}
	v.state.mu.Lock()
	v.state.recentTo = max(v.state.recentTo, next)
	v.state.mu.Unlock()
	v.recent.upTo = next
	if resp.ToUid <= resp.FromUid {
		return false
	}
	v.recent.uids.AddRange(imap.UID(resp.FromUid), imap.UID(resp.ToUid-1))
	return true
}

// visibleRecent counts the recent messages the client knows of: a walk
// over the recent UIDs only (mostly the newest messages), so an idling
// session's count after each arrival costs the recent messages, not the
// mailbox.
func (s *session) visibleRecent() uint32 {
	v := s.selected
	if v.recent == nil {
		return 0
	}
	var set imap.UIDSet
	if v.recent.cutoff > 0 {
		set.AddRange(imap.UID(v.recent.cutoff), imap.UID(^uint32(0)))
	} else {
		set = append(set, v.recent.uids...)
	}
	if len(set) == 0 {
		return 0
	}
	var n uint32
	for walk := v.walk(set); ; {
		window := walk.next(windowSize)
		if len(window) == 0 {
			return n
		}
		n += uint32(len(window))
	}
}

// reportArrivals claims new arrivals and, when it got some, says how many
// messages are recent now (RFC 3501 7.3.2: RECENT follows EXISTS).
func (s *session) reportArrivals(w *imapconn.UpdateWriter, claimed bool) error {
	if !claimed {
		return nil
	}
	return w.WriteNumRecent(s.visibleRecent())
}

// recentCriteria turns SEARCH RECENT, NEW and OLD (flag \Recent, RFC 3501
// 6.4.4) into the session's recent UIDs.
func (s *session) recentCriteria(c *imap.SearchCriteria) {
	v := s.selected
	var set imap.UIDSet
	if v.recent != nil && !s.rev2() {
		if v.recent.cutoff > 0 {
			set.AddRange(imap.UID(v.recent.cutoff), imap.UID(^uint32(0)))
		} else {
			set = append(set, v.recent.uids...)
		}
	}
	flags := c.Flag[:0:0]
	for _, f := range c.Flag {
		if strings.EqualFold(string(f), "\\Recent") {
			c.UID = append(c.UID, set)
			continue
		}
		flags = append(flags, f)
	}
	c.Flag = flags
	notFlags := c.NotFlag[:0:0]
	for _, f := range c.NotFlag {
		if strings.EqualFold(string(f), "\\Recent") {
			c.Not = append(c.Not, imap.SearchCriteria{UID: []imap.UIDSet{set}})
			continue
		}
		notFlags = append(notFlags, f)
	}
	c.NotFlag = notFlags
	for i := range c.Not {
		s.recentCriteria(&c.Not[i])
	}
	for i := range c.Or {
		s.recentCriteria(&c.Or[i][0])
		s.recentCriteria(&c.Or[i][1])
	}
}

// statusRecent answers STATUS RECENT: the messages no session has claimed
// yet (those the next SELECT gets as recent), without claiming them.
func (s *session) statusRecent(ctx context.Context, mb *storagev1.Mailbox) (uint32, error) {
	if s.rev2() {
		return 0, nil
	}
	resp, err := s.srv.store.Mailboxes.ClaimRecent(ctx, &storagev1.ClaimRecentRequest{
		AccountId: s.account.Id, MailboxId: mb.Id, Peek: true})
	if err != nil {
		return 0, err
	}
	if resp.FromUid >= mb.UidNext {
		return 0, nil
	}
	req := &storagev1.ListMessagesRequest{AccountId: s.account.Id, MailboxId: mb.Id, Limit: 5000,
		Uids: &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: resp.FromUid, Last: mb.UidNext - 1}}}}
	var n uint32
	for {
		page, err := s.srv.store.Messages.ListMessages(ctx, req)
		if err != nil {
			return 0, err
		}
		n += uint32(len(page.Messages))
		if !page.More {
			return n, nil
		}
		req.AfterUid, req.Revision = page.NextAfterUid, page.Revision
	}
}

var _ imapconn.SessionFlagger = (*session)(nil)

// SessionFlags adds \Recent to the flags of a FETCH response (FETCH,
// STORE, unsolicited updates) for a message recent to this session.
func (s *session) SessionFlags(uid imap.UID, flags []imap.Flag) []imap.Flag {
	return s.withRecent(uint32(uid), flags)
}
