package imapd

import (
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
	"strings"

	"github.com/emersion/go-imap/v2"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// delim is the hierarchy separator (the storage tier's).
const delim = '/'

var specialUseAttr = map[storagev1.SpecialUse]imap.MailboxAttr{
	storagev1.SpecialUse_SPECIAL_USE_DRAFTS:  imap.MailboxAttrDrafts,
	storagev1.SpecialUse_SPECIAL_USE_SENT:    imap.MailboxAttrSent,
	storagev1.SpecialUse_SPECIAL_USE_TRASH:   imap.MailboxAttrTrash,
	storagev1.SpecialUse_SPECIAL_USE_JUNK:    imap.MailboxAttrJunk,
	storagev1.SpecialUse_SPECIAL_USE_ARCHIVE: imap.MailboxAttrArchive,
	storagev1.SpecialUse_SPECIAL_USE_ALL:     imap.MailboxAttrAll,
	storagev1.SpecialUse_SPECIAL_USE_FLAGGED: imap.MailboxAttrFlagged,
}

// systemFlags are always offered in FLAGS and PERMANENTFLAGS.
var systemFlags = []imap.Flag{imap.FlagAnswered, imap.FlagDeleted, imap.FlagDraft, imap.FlagFlagged, imap.FlagSeen}

// RFC 9051 6.3.2 SELECT / 6.3.3 EXAMINE.
func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.unselect()
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.srv.store.Mailboxes.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: s.account.Id, Name: name})
	if err != nil {
		return nil, mapError(err)
	}
	state, err := s.acct.mailbox(ctx, resp.Mailbox.Id)
	if err != nil {
		return nil, mapError(err)
	}
	if err := state.catchUp(ctx, resp.Mailbox); err != nil {
		state.release()
		return nil, mapError(err)
	}
	recent := s.beginRecent(ctx, resp.Mailbox.Id, resp.Mailbox.UidNext, options != nil && options.ReadOnly)
	state.mu.Lock()
	defer state.mu.Unlock()
	v := &view{state: state, tracker: state.tracker.NewSession(), name: resp.Mailbox.Name, readOnly: options != nil && options.ReadOnly}
	v.recent = recent
	if n := len(state.entries); n > 0 {
		v.newFetched = state.entries[n-1].uid
	}
	s.selected = v
	if s.notify != nil {
		s.notify.setSelected(state.id)
	}
	firstUnseen := uint32(0)
	for i, e := range state.entries {
		if !hasFlag(e.flags, string(imap.FlagSeen)) {
			firstUnseen = uint32(i + 1)
			break
		}
	}
	// The same list the sessions get when a new keyword appears.
	flags := state.mailboxFlagsLocked()
	permanent := append(append([]imap.Flag(nil), flags...), imap.FlagWildcard)
	if v.readOnly {
		permanent = nil
	}
	return &imap.SelectData{
		Flags:             flags,
		PermanentFlags:    permanent,
		NumMessages:       uint32(len(state.entries)),
		NumRecent:         recent.countLocked(state.entries),
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           imap.UID(state.uidNext),
		UIDValidity:       state.uidValidity,
		HighestModSeq:     state.modseq,
	}, nil
}

func (s *session) unselect() {
	if s.notify != nil {
		s.notify.setSelected("")
	}
	if s.selected != nil {
		s.selected.tracker.Close()
		s.selected.state.release()
		s.selected = nil
	}
}

// RFC 9051 6.4.2 CLOSE / RFC 3691 UNSELECT (CLOSE's expunge is done by the
// library through Expunge before it calls Unselect).
func (s *session) Unselect() error {
	s.unselect()
	return nil
}

// RFC 9051 6.3.4 CREATE (RFC 6154 CREATE-SPECIAL-USE).
func (s *session) Create(name string, options *imap.CreateOptions) error {
	name = strings.TrimSuffix(name, string(delim))
	use := storagev1.SpecialUse_SPECIAL_USE_NONE
	if options != nil {
		for _, attr := range options.SpecialUse {
			found := false
			for u, a := range specialUseAttr {
				if strings.EqualFold(string(a), string(attr)) {
					use, found = u, true
				}
			}
			if !found {
				return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR", Text: "Unsupported special-use attribute"}
			}
		}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.srv.store.Mailboxes.CreateMailbox(ctx, &storagev1.CreateMailboxRequest{AccountId: s.account.Id, Name: name, SpecialUse: use, Subscribed: true})
	if err == nil {
		s.markOwn(ownMark{kind: ownCreated, name: resp.Mailbox.GetName()})
	}
	return mapError(err)
}

// RFC 9051 6.3.5 DELETE.
func (s *session) Delete(name string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	_, err := s.srv.store.Mailboxes.DeleteMailbox(ctx, &storagev1.DeleteMailboxRequest{AccountId: s.account.Id, Name: name})
	if err == nil {
		s.markOwn(ownMark{kind: ownDeleted, name: name})
	}
	return mapError(err)
}

// RFC 9051 6.3.6 RENAME (children move along).
func (s *session) Rename(name, newName string, options *imap.RenameOptions) error {
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.srv.store.Mailboxes.RenameMailbox(ctx, &storagev1.RenameMailboxRequest{AccountId: s.account.Id, Name: name, NewName: newName})
	if err == nil {
		s.markOwn(ownMark{kind: ownRenamed, name: resp.Mailbox.GetName(), oldName: name})
	}
	return mapError(err)
}

// RFC 9051 6.3.7/6.3.8 SUBSCRIBE, UNSUBSCRIBE.
func (s *session) Subscribe(name string) error   { return s.setSubscribed(name, true) }
func (s *session) Unsubscribe(name string) error { return s.setSubscribed(name, false) }

func (s *session) setSubscribed(name string, on bool) error {
	ctx, cancel := s.ctx()
	defer cancel()
	_, err := s.srv.store.Mailboxes.SetSubscribed(ctx, &storagev1.SetSubscribedRequest{AccountId: s.account.Id, Name: name, Subscribed: on})
	if err == nil {
		kind := ownUnsubscribed
		if on {
			kind = ownSubscribed
		}
		s.markOwn(ownMark{kind: kind, name: name})
	}
	if !on && storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_MAILBOX_NOT_FOUND {
		// A name that no longer exists is not subscribed either: the
		// UNSUBSCRIBE has nothing to do (RFC 9051 6.3.8).
		return nil
	}
	return mapError(err)
}

// RFC 9051 6.3.9 LIST with RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS,
// RFC 6154 SPECIAL-USE and RFC 3348 CHILDREN.
func (s *session) List(w *imapconn.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if options == nil {
		options = &imap.ListOptions{}
	}
	if len(patterns) == 1 && patterns[0] == "" {
		// RFC 9051 6.3.9: an empty pattern asks for the delimiter.
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.srv.store.Mailboxes.ListMailboxes(ctx, &storagev1.ListMailboxesRequest{AccountId: s.account.Id})
	if err != nil {
		return mapError(err)
	}
	hasChildren := map[string]bool{}
	for _, mb := range resp.Mailboxes {
		if i := strings.LastIndexByte(mb.Name, byte(delim)); i > 0 {
			for p := mb.Name[:i]; ; {
				hasChildren[p] = true
				j := strings.LastIndexByte(p, byte(delim))
				if j <= 0 {
					break
				}
				p = p[:j]
			}
		}
	}
	matched := func(name string) bool {
		for _, pattern := range patterns {
			if imapconn.MatchList(name, delim, ref, pattern) {
				return true
			}
		}
		return false
	}
	sel := newListSelection(w, resp, options, matched)
	for _, mb := range resp.Mailboxes {
		if !matched(mb.Name) {
			continue
		}
		attr, special := specialUseAttr[mb.SpecialUse]
		if !sel.selected(mb) {
			if !sel.parentOnly(mb) {
				continue
			}
			if sel.lsub {
				if err := w.WriteList(&imap.ListData{Mailbox: mb.Name, Delim: delim, Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}}); err != nil {
					return err
				}
				continue
			}
		}
		data := &imap.ListData{Mailbox: mb.Name, Delim: delim, ChildInfo: sel.childInfo(mb)}
		if hasChildren[mb.Name] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if special {
			data.Attrs = append(data.Attrs, attr)
		}
		if mb.Subscribed && (options.ReturnSubscribed || options.SelectSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if options.ReturnStatus != nil {
			data.Status = statusData(mb, options.ReturnStatus)
			w.SetMailboxID(mb.Id)
			if options.ReturnStatus.NumRecent {
				n, err := s.statusRecent(ctx, mb)
				if err != nil {
					return mapError(err)
				}
				data.Status.NumRecent = &n
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return sel.writeMissing(w, resp.SubscribedMissing, matched)
}

func statusData(mb *storagev1.Mailbox, options *imap.StatusOptions) *imap.StatusData {
	data := &imap.StatusData{Mailbox: mb.Name}
	if options.NumMessages {
		n := mb.Messages
		data.NumMessages = &n
	}
	if options.UIDNext {
		data.UIDNext = imap.UID(mb.UidNext)
	}
	if options.UIDValidity {
		data.UIDValidity = mb.UidValidity
	}
	if options.NumUnseen {
		n := mb.Unseen
		data.NumUnseen = &n
	}
	if options.Size {
		n := int64(mb.Size)
		data.Size = &n
	}
	if options.HighestModSeq {
		data.HighestModSeq = mb.HighestModseq
	}
	if options.NumRecent {
		var zero uint32
		data.NumRecent = &zero
	}
	return data
}

// RFC 9051 6.3.11 STATUS (RFC 8438 STATUS=SIZE, RFC 7889 APPENDLIMIT).
func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.srv.store.Mailboxes.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: s.account.Id, Name: name})
	if err != nil {
		return nil, mapError(err)
	}
	data := statusData(resp.Mailbox, options)
	if options.NumRecent {
		n, err := s.statusRecent(ctx, resp.Mailbox)
		if err != nil {
			return nil, mapError(err)
		}
		data.NumRecent = &n
	}
	if options.AppendLimit {
		n := s.appendLimit
		data.AppendLimit = &n
	}
	return data, nil
}

// Quota is the account's quota root (RFC 9208): STORAGE in units of 1024
// octets (usage rounded up) and MESSAGE, each only when it has a limit.
func (s *session) Quota() ([]imapconn.QuotaResource, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.srv.store.Accounts.GetAccount(ctx, &storagev1.GetAccountRequest{AccountId: s.account.Id})
	if err != nil {
		return nil, mapError(err)
	}
	q := resp.Account.GetQuota()
	var out []imapconn.QuotaResource
	if q.GetLimitBytes() > 0 {
		out = append(out, imapconn.QuotaResource{Name: "STORAGE", Usage: int64((q.UsedBytes + 1023) / 1024), Limit: int64(q.LimitBytes / 1024)})
	}
	if q.GetLimitMessages() > 0 {
		out = append(out, imapconn.QuotaResource{Name: "MESSAGE", Usage: int64(q.UsedMessages), Limit: int64(q.LimitMessages)})
	}
	return out, nil
}
