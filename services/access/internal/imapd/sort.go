package imapd

import (
	"cmp"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/mailfleet/mailfleet/pkg/storeclient"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
)

// SORT and THREAD (RFC 5256) run over the storage index: the matching
// messages' envelopes are listed page by page at one revision, and only
// the few fields the keys need are kept per message (never bodies, never
// whole envelopes), so a 100 000-message mailbox sorts in bounded memory.

// maxKeyLen bounds a string sort key kept per message.
const maxKeyLen = 256

// matching returns the messages that match criteria, in mailbox order,
// and SEARCH's MODSEQ (RFC 7162 section 3.1.5) for them.
func (s *session) matching(criteria *imap.SearchCriteria) ([]target, uint64, error) {
	data, err := s.Search(imapconn.NumKindUID, criteria, &imap.SearchOptions{ReturnAll: true})
	if err != nil {
		return nil, 0, err
	}
	uids, _ := data.All.(imap.UIDSet)
	if len(uids) == 0 {
		return nil, 0, nil
	}
	return s.selected.resolve(uids), data.ModSeq, nil
}

// eachEnvelope calls fn for every target still in the mailbox with its
// index entry (envelope included), in UID order, one ListMessages page at a
// time at the first page's revision. fn must not keep m.
func (s *session) eachEnvelope(targets []target, fn func(t target, m *storagev1.Message)) error {
	if len(targets) == 0 {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	req := &storagev1.ListMessagesRequest{AccountId: s.account.Id, MailboxId: s.selected.state.id,
		Uids: storeclient.UIDSetOf(uidsOf(targets)), IncludeEnvelope: true, Limit: 5000}
	i := 0
	for {
		resp, err := s.srv.store.Messages.ListMessages(ctx, req)
		if err != nil {
			return mapError(err)
		}
		for _, m := range resp.Messages {
			for i < len(targets) && targets[i].uid < m.Uid {
				i++ // expunged meanwhile
			}
			if i < len(targets) && targets[i].uid == m.Uid {
				fn(targets[i], m)
				i++
			}
		}
		if !resp.More {
			return nil
		}
		req.AfterUid, req.Revision = resp.NextAfterUid, resp.Revision
	}
}

// sortRec is what SORT keeps of one message.
type sortRec struct {
	uid, seq uint32
	arrival  int64
	date     int64
	size     uint64
	strs     []string // the string keys, in the order of the criteria
}

// ResetSearchResult implements imapconn.SearchResultResetter (RFC 5182:
// a SEARCH or SORT with SAVE that failed with NO leaves "$" empty).
func (s *session) ResetSearchResult() {
	if s.selected != nil {
		s.selected.searchRes = nil
	}
}

// Sort implements imapconn.Sorter (RFC 5256 section 3, RFC 5957).
func (s *session) Sort(kind imapconn.NumKind, keys []imapconn.SortCriterion, criteria *imap.SearchCriteria, ret *imap.SearchOptions) ([]uint32, uint64, error) {
	targets, modSeq, err := s.matching(criteria)
	if err != nil {
		return nil, 0, err
	}
	strKeys := 0
	for _, k := range keys {
		if isStringKey(k.Key) {
			strKeys++
		}
	}
	recs := make([]sortRec, 0, len(targets))
	err = s.eachEnvelope(targets, func(t target, m *storagev1.Message) {
		r := sortRec{uid: t.uid, seq: t.seq, size: m.Size, arrival: m.InternalDate.AsTime().UnixNano()}
		r.date = sentDate(m)
		if strKeys > 0 {
			r.strs = make([]string, 0, strKeys)
			for _, k := range keys {
				if isStringKey(k.Key) {
					r.strs = append(r.strs, stringKey(k.Key, m.Envelope))
				}
			}
		}
		recs = append(recs, r)
	})
	if err != nil {
		return nil, 0, err
	}
	slices.SortFunc(recs, func(a, b sortRec) int { return compareRecs(keys, &a, &b) })
	out := make([]uint32, len(recs))
	for i, r := range recs {
		out[i] = r.seq
		if kind == imapconn.NumKindUID {
			out[i] = r.uid
		}
	}
	if ret != nil && ret.ReturnSave {
		// "$" is a set: the saved messages, in UID order. MIN and MAX
		// are the first and last in sort order (RFC 5267 section 3), and
		// so are the messages they save.
		sorted := make([]uint32, len(recs))
		for i, r := range recs {
			sorted[i] = r.uid
		}
		slices.Sort(sorted)
		var uids imap.UIDSet
		for _, u := range sorted {
			uids.AddNum(imap.UID(u))
		}
		var first, last uint32
		if len(recs) > 0 {
			first, last = recs[0].uid, recs[len(recs)-1].uid
		}
		s.selected.searchRes = savedResult(ret, uids, first, last)
	}
	return out, modSeq, nil
}

// compareRecs orders two messages by keys, then by mailbox order (RFC
// 5256 section 3: messages that match exactly keep their mailbox order).
func compareRecs(keys []imapconn.SortCriterion, a, b *sortRec) int {
	si := 0
	for _, k := range keys {
		var c int
		switch k.Key {
		case imapconn.SortArrival:
			c = cmp.Compare(a.arrival, b.arrival)
		case imapconn.SortDate:
			c = cmp.Compare(a.date, b.date)
		case imapconn.SortSize:
			c = cmp.Compare(a.size, b.size)
		default:
			c = strings.Compare(a.strs[si], b.strs[si])
			si++
		}
		if k.Reverse {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(a.uid, b.uid)
}

func isStringKey(key string) bool {
	switch key {
	case imapconn.SortArrival, imapconn.SortDate, imapconn.SortSize:
		return false
	}
	return true
}

// sentDate is the Date header's time, or INTERNALDATE when there is none
// or it does not parse (RFC 5256 section 2.2).
func sentDate(m *storagev1.Message) int64 {
	if env := m.Envelope; env != nil && env.Date != nil {
		return env.Date.AsTime().UnixNano()
	}
	return m.InternalDate.AsTime().UnixNano()
}

// stringKey is a string sort key of a message, case-mapped and bounded.
func stringKey(key string, env *storagev1.Envelope) string {
	if env == nil {
		return ""
	}
	var v string
	switch key {
	case imapconn.SortSubject:
		v, _ = baseSubject(env.Subject)
	case imapconn.SortFrom:
		v = firstMailbox(env.From)
	case imapconn.SortTo:
		v = firstMailbox(env.To)
	case imapconn.SortCc:
		v = firstMailbox(env.Cc)
	case imapconn.SortDisplayFrom:
		v = displayName(env.From)
	case imapconn.SortDisplayTo:
		v = displayName(env.To)
	}
	return bounded(casemap(v))
}

// firstMailbox is the addr-mailbox of a list's first address (RFC 5256
// section 3: FROM, TO, CC).
func firstMailbox(l []*storagev1.Address) string {
	if len(l) == 0 {
		return ""
	}
	return l[0].Mailbox
}

// displayName is RFC 5957 section 3's display string of a list's first
// address: its display-name, or its addr-spec when it has none.
func displayName(l []*storagev1.Address) string {
	if len(l) == 0 {
		return ""
	}
	if name := strings.TrimSpace(l[0].Name); name != "" {
		return name
	}
	if l[0].Host == "" {
		return l[0].Mailbox
	}
	return l[0].Mailbox + "@" + l[0].Host
}

// bounded returns s cut to maxKeyLen, in memory of its own (the index
// entry it came from is not kept alive by it).
func bounded(s string) string {
	if len(s) > maxKeyLen {
		s = s[:maxKeyLen]
	}
	return strings.Clone(s)
}
