package imapd

import (
	"strings"

	"github.com/emersion/go-imap/v2"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
)

// listSelection is what LIST's selection options (RFC 5258 section 3.1)
// and LSUB make of the account's mailboxes: which are selected, and which
// have selected descendants.
type listSelection struct {
	options *imap.ListOptions
	lsub    bool
	// below: names with a selected descendant; belowUnmatched: with a
	// selected descendant that no pattern matches.
	below, belowUnmatched map[string]bool
}

func newListSelection(w *imapconn.ListWriter, resp *storagev1.ListMailboxesResponse, options *imap.ListOptions, matched func(name string) bool) *listSelection {
	ls := &listSelection{options: options, lsub: w.LSub(), below: map[string]bool{}, belowUnmatched: map[string]bool{}}
	var names []string
	for _, mb := range resp.Mailboxes {
		if ls.selected(mb) {
			names = append(names, mb.Name)
		}
	}
	if ls.subscribedOnly() {
		names = append(names, resp.SubscribedMissing...)
	}
	for _, name := range names {
		unmatched := !matched(name)
		for p := name; ; {
			i := strings.LastIndexByte(p, byte(delim))
			if i <= 0 {
				break
			}
			p = p[:i]
			ls.below[p] = true
			if unmatched {
				ls.belowUnmatched[p] = true
			}
		}
	}
	return ls
}

// subscribedOnly: LSUB, or LIST (SUBSCRIBED): subscribed names without a
// mailbox are listed too.
func (ls *listSelection) subscribedOnly() bool { return ls.lsub || ls.options.SelectSubscribed }

// writeMissing lists the subscribed names that have no mailbox (RFC 5258
// section 3.1: "\NonExistent" with "\Subscribed"; for LSUB, RFC 3501
// 6.3.9 keeps them listed, \Noselect). No STATUS for them (RFC 5819
// section 2: not for a \NonExistent mailbox).
func (ls *listSelection) writeMissing(w *imapconn.ListWriter, names []string, matched func(string) bool) error {
	if !ls.subscribedOnly() || ls.options.SelectSpecialUse {
		return nil
	}
	for _, name := range names {
		if !matched(name) {
			continue
		}
		data := &imap.ListData{Mailbox: name, Delim: delim, Attrs: []imap.MailboxAttr{imap.MailboxAttrNonExistent, imap.MailboxAttrSubscribed}}
		if ls.lsub {
			data.Attrs = []imap.MailboxAttr{imap.MailboxAttrNoSelect}
		} else {
			data.ChildInfo = ls.childInfoOf(name)
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// selected reports whether mb satisfies the selection options.
func (ls *listSelection) selected(mb *storagev1.Mailbox) bool {
	if ls.options.SelectSubscribed && !mb.Subscribed {
		return false
	}
	if _, special := specialUseAttr[mb.SpecialUse]; ls.options.SelectSpecialUse && !special {
		return false
	}
	return true
}

// parentOnly reports whether a mailbox that is not selected is listed all
// the same, for its descendants: with RECURSIVEMATCH (RFC 5258 section
// 3.1, with CHILDINFO), or by LSUB when a subscribed descendant is hidden
// by a "%" (RFC 3501 6.3.9: "A "%" wildcard to LSUB must return foo, not
// foo/bar, in the LSUB response, and it MUST be flagged with the \Noselect
// attribute").
func (ls *listSelection) parentOnly(mb *storagev1.Mailbox) bool {
	if ls.lsub {
		return ls.belowUnmatched[mb.Name]
	}
	return ls.options.SelectRecursiveMatch && ls.below[mb.Name]
}

// childInfo is the CHILDINFO extended data item of mb, if any (RFC 5258
// section 3.5: only with RECURSIVEMATCH; "SUBSCRIBED" is the one selection
// option it names).
func (ls *listSelection) childInfo(mb *storagev1.Mailbox) *imap.ListDataChildInfo {
	return ls.childInfoOf(mb.Name)
}

func (ls *listSelection) childInfoOf(name string) *imap.ListDataChildInfo {
	if ls.lsub || !ls.options.SelectRecursiveMatch || !ls.options.SelectSubscribed || !ls.below[name] {
		return nil
	}
	return &imap.ListDataChildInfo{Subscribed: true}
}
