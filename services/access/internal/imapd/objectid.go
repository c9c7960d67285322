package imapd

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
)

// RFC 8474 OBJECTID. MAILBOXID is the storage tier's mailbox id: it never
// changes for a mailbox (RENAME keeps it) and is never reused. EMAILID is
// derived from the message's body key: a COPY or MOVE shares the stored
// body, so the copy has the same EMAILID (RFC 8474 section 5.1: "the same
// EMAILID ... if the message is moved or copied"), while two different
// messages have different bodies, hence keys. THREADID is NIL: this server
// keeps no thread index, which RFC 8474 section 5.2 allows for messages
// that belong to no thread.

var _ imapconn.ObjectIDs = (*session)(nil)

// MailboxID answers a mailbox's MAILBOXID by name.
func (s *session) MailboxID(name string) (string, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.srv.store.Mailboxes.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: s.account.Id, Name: name})
	if err != nil {
		return "", mapError(err)
	}
	return resp.Mailbox.Id, nil
}

// SelectedMailboxID is the selected mailbox's MAILBOXID.
func (s *session) SelectedMailboxID() string {
	if s.selected == nil {
		return ""
	}
	return s.selected.state.id
}

// emailID is a message's EMAILID: "M" and 24 hex digits of a hash of its
// body key (objectid: 1*255(ALPHA / DIGIT / "_" / "-")).
func emailID(bodyKey string) string {
	sum := sha256.Sum256([]byte(bodyKey))
	return "M" + hex.EncodeToString(sum[:12])
}

// saveDate is when the message instance was saved in this mailbox (RFC
// 8514): APPEND, COPY, MOVE or delivery. Entries stored before the index
// kept it answer their internal date: RFC 8514 section 4.1 lets a server
// answer NIL where it does not know the save date, but the internal date
// is when the message was saved in a mailbox of the account for every
// entry older than the field (delivery and APPEND set both; only a COPY
// or MOVE of an old entry differs), and a date keeps SAVEDBEFORE and
// SAVEDSINCE meaningful for every message.
func saveDate(m *storagev1.Message) time.Time {
	if m.SaveDate != nil {
		return m.SaveDate.AsTime()
	}
	return m.InternalDate.AsTime()
}

// writeExtItems writes the FETCH items of OBJECTID, SAVEDATE and PREVIEW.
func (s *session) writeExtItems(rw *imapconn.FetchResponseWriter, t target, m *storagev1.Message) error {
	x := s.fetchExt
	if x.EmailID {
		rw.WriteEmailID(emailID(m.BodyKey))
	}
	if x.ThreadID {
		rw.WriteThreadID("")
	}
	if x.SaveDate {
		rw.WriteSaveDate(saveDate(m))
	}
	if x.Preview {
		text, err := s.preview(t.uid, m)
		if err != nil {
			return err
		}
		rw.WritePreview(text, false)
	}
	return nil
}

// extCriteria turns the SEARCH keys of OBJECTID and SAVEDATE (pseudo
// header fields, see imapconn.SearchEmailID) into UID sets, from the
// entries of the whole mailbox read window by window.
func (s *session) extCriteria(c *imap.SearchCriteria) error {
	keys := map[imap.SearchCriteriaHeaderField]*imap.UIDSet{}
	collectExtKeys(c, keys)
	if len(keys) == 0 {
		return nil
	}
	all := s.selected.walk(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}})
	for {
		window := all.next(windowSize)
		if len(window) == 0 {
			break
		}
		meta, err := s.metadata(uidsOf(window), false, false)
		if err != nil {
			return mapError(err)
		}
		for k, set := range keys {
			for uid, m := range meta {
				if matchesExt(k, m) {
					set.AddNum(imap.UID(uid))
				}
			}
		}
	}
	replaceExtKeys(c, keys)
	return nil
}

func isExtKey(h imap.SearchCriteriaHeaderField) bool { return strings.HasPrefix(h.Key, "\x00") }

func collectExtKeys(c *imap.SearchCriteria, keys map[imap.SearchCriteriaHeaderField]*imap.UIDSet) {
	for _, h := range c.Header {
		if isExtKey(h) && keys[h] == nil {
			keys[h] = &imap.UIDSet{}
		}
	}
	for i := range c.Not {
		collectExtKeys(&c.Not[i], keys)
	}
	for i := range c.Or {
		collectExtKeys(&c.Or[i][0], keys)
		collectExtKeys(&c.Or[i][1], keys)
	}
}

func replaceExtKeys(c *imap.SearchCriteria, keys map[imap.SearchCriteriaHeaderField]*imap.UIDSet) {
	var header []imap.SearchCriteriaHeaderField
	for _, h := range c.Header {
		if set := keys[h]; set != nil {
			c.UID = append(c.UID, *set) // an empty set matches nothing
			continue
		}
		header = append(header, h)
	}
	c.Header = header
	for i := range c.Not {
		replaceExtKeys(&c.Not[i], keys)
	}
	for i := range c.Or {
		replaceExtKeys(&c.Or[i][0], keys)
		replaceExtKeys(&c.Or[i][1], keys)
	}
}

// matchesExt evaluates one extension key on an entry.
func matchesExt(k imap.SearchCriteriaHeaderField, m *storagev1.Message) bool {
	switch k.Key {
	case imapconn.SearchEmailID:
		return emailID(m.BodyKey) == k.Value
	case imapconn.SearchThreadID:
		return false // no message belongs to a thread (THREADID NIL)
	case imapconn.SearchSaveDateSupported:
		return true // every message has a save date (see saveDate)
	}
	// SAVEDBEFORE, SAVEDON, SAVEDSINCE compare dates, disregarding the time
	// (RFC 8514 section 4.2, as RFC 3501 BEFORE, ON and SINCE), in UTC,
	// the save date's zone.
	day := saveDate(m).UTC().Format(time.DateOnly)
	switch k.Key {
	case imapconn.SearchSavedBefore:
		return day < k.Value
	case imapconn.SearchSavedOn:
		return day == k.Value
	case imapconn.SearchSavedSince:
		return day >= k.Value
	}
	return false
}
