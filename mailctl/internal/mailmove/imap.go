package mailmove

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// IMAP batches: bodies are fetched and appended this many at a time.
const (
	imapBatchMessages = 500
	imapBatchBytes    = 32 << 20
)

// IMAPSource imports every folder of an account on a live IMAP server.
type IMAPSource struct {
	Addr, User, Password         string
	StartTLS, InsecureSkipVerify bool
	// StatePath, when set, makes the import resumable: per source folder
	// the UIDVALIDITY and the last UID imported, and the batch in flight.
	StatePath string
	// Limit stops the import after this many messages (0: no limit).
	Limit int
}

// importState is the state file.
type importState struct {
	Source  string                  `json:"source"`
	Folders map[string]*folderState `json:"folders"`
}

type folderState struct {
	UIDValidity uint32 `json:"uid_validity"`
	LastUID     uint32 `json:"last_uid"`
	// Pending is the batch being appended: if the import stopped before
	// it recorded the outcome, the next run looks for it in the
	// destination (consecutive UIDs from UIDNext with these sizes: an
	// AppendMessages is all or nothing).
	Pending *pendingBatch `json:"pending,omitempty"`
}

type pendingBatch struct {
	MailboxID string  `json:"mailbox_id"`
	UIDNext   uint32  `json:"uid_next"`
	LastUID   uint32  `json:"last_uid"`
	Sizes     []int64 `json:"sizes"`
}

func (src *IMAPSource) loadState() (*importState, error) {
	st := &importState{Source: src.User + "@" + src.Addr, Folders: map[string]*folderState{}}
	if src.StatePath == "" {
		return st, nil
	}
	b, err := os.ReadFile(src.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	var saved importState
	if err := json.Unmarshal(b, &saved); err != nil {
		return nil, fmt.Errorf("state file %s: %w", src.StatePath, err)
	}
	if saved.Source != st.Source {
		return nil, fmt.Errorf("state file %s belongs to an import from %s, not %s", src.StatePath, saved.Source, st.Source)
	}
	if saved.Folders == nil {
		saved.Folders = map[string]*folderState{}
	}
	return &saved, nil
}

// save writes the state durably.
func (src *IMAPSource) save(st *importState) error { return writeState(src.StatePath, st) }

func (src *IMAPSource) dial() (*imapclient.Client, error) {
	host, _, err := net.SplitHostPort(src.Addr)
	if err != nil {
		return nil, fmt.Errorf("--imap %s: %w", src.Addr, err)
	}
	cfg := &tls.Config{ServerName: host, InsecureSkipVerify: src.InsecureSkipVerify, NextProtos: []string{"imap"}}
	conn, err := dialIMAP(src.Addr, cfg, src.StartTLS)
	if err != nil {
		return nil, err
	}
	c := imapclient.New(conn, &imapclient.Options{})
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Import copies every selectable folder into the account behind s.
func (src *IMAPSource) Import(ctx context.Context, s *Store, progress Progress) (int, error) {
	st, err := src.loadState()
	if err != nil {
		return 0, err
	}
	c, err := src.dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	stopWatch := context.AfterFunc(ctx, func() { c.Close() })
	defer stopWatch()
	if err := c.Login(src.User, src.Password).Wait(); err != nil {
		return 0, fmt.Errorf("IMAP login: %w", err)
	}
	caps := c.Caps()
	listOpts := &imap.ListOptions{}
	if caps.Has(imap.CapListExtended) {
		listOpts.ReturnSubscribed = true
	}
	if caps.Has(imap.CapSpecialUse) {
		listOpts.ReturnSpecialUse = true
	}
	list, err := c.List("", "*", listOpts).Collect()
	if err != nil {
		return 0, fmt.Errorf("IMAP LIST: %w", err)
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := strings.EqualFold(list[i].Mailbox, "INBOX"), strings.EqualFold(list[j].Mailbox, "INBOX")
		if a != b {
			return a
		}
		return list[i].Mailbox < list[j].Mailbox
	})
	total := 0
	for _, l := range list {
		if hasAttr(l.Attrs, imap.MailboxAttrNoSelect) || hasAttr(l.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		if src.Limit > 0 && total >= src.Limit {
			break
		}
		n, err := src.importFolder(ctx, c, s, st, l, total, progress)
		total += n
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return total, fmt.Errorf("%s: %w", l.Mailbox, err)
		}
	}
	if err := c.Logout().Wait(); err != nil && ctx.Err() == nil {
		return total, nil // the import is done; a failed LOGOUT changes nothing
	}
	return total, nil
}

func hasAttr(attrs []imap.MailboxAttr, a imap.MailboxAttr) bool {
	for _, x := range attrs {
		if strings.EqualFold(string(x), string(a)) {
			return true
		}
	}
	return false
}

func specialUseOf(attrs []imap.MailboxAttr) storagev1.SpecialUse {
	for _, m := range []struct {
		a imap.MailboxAttr
		u storagev1.SpecialUse
	}{
		{imap.MailboxAttrDrafts, storagev1.SpecialUse_SPECIAL_USE_DRAFTS}, {imap.MailboxAttrSent, storagev1.SpecialUse_SPECIAL_USE_SENT},
		{imap.MailboxAttrTrash, storagev1.SpecialUse_SPECIAL_USE_TRASH}, {imap.MailboxAttrJunk, storagev1.SpecialUse_SPECIAL_USE_JUNK},
		{imap.MailboxAttrArchive, storagev1.SpecialUse_SPECIAL_USE_ARCHIVE}, {imap.MailboxAttrAll, storagev1.SpecialUse_SPECIAL_USE_ALL},
		{imap.MailboxAttrFlagged, storagev1.SpecialUse_SPECIAL_USE_FLAGGED},
	} {
		if hasAttr(attrs, m.a) {
			return m.u
		}
	}
	return storagev1.SpecialUse_SPECIAL_USE_NONE
}

func (src *IMAPSource) importFolder(ctx context.Context, c *imapclient.Client, s *Store, st *importState, l *imap.ListData, already int, progress Progress) (int, error) {
	name := l.Mailbox
	if l.Delim != 0 && string(l.Delim) != Delimiter {
		name = strings.ReplaceAll(name, string(l.Delim), Delimiter)
	}
	if strings.EqualFold(name, "INBOX") {
		name = "INBOX"
	}
	sel, err := c.Select(l.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return 0, err
	}
	fst := st.Folders[l.Mailbox]
	switch {
	case fst == nil:
		fst = &folderState{UIDValidity: sel.UIDValidity}
		st.Folders[l.Mailbox] = fst
	case fst.UIDValidity != sel.UIDValidity:
		return 0, fmt.Errorf("UIDVALIDITY changed from %d to %d since the last run: its UIDs no longer say what was imported "+
			"(remove the folder from the state file to import it again in full)", fst.UIDValidity, sel.UIDValidity)
	}
	subscribed := hasAttr(l.Attrs, imap.MailboxAttrSubscribed)
	mb, err := s.EnsureMailbox(ctx, name, subscribed, specialUseOf(l.Attrs))
	if err != nil {
		return 0, err
	}
	if fst.Pending != nil {
		if err := s.resolvePending(ctx, fst); err != nil {
			return 0, err
		}
		if err := src.save(st); err != nil {
			return 0, err
		}
	}
	if sel.NumMessages == 0 {
		progress(name, 0, 0)
		return 0, src.save(st)
	}
	meta, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: imap.UID(fst.LastUID + 1), Stop: 0}},
		&imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true}).Collect()
	if err != nil {
		return 0, err
	}
	todo := meta[:0]
	for _, m := range meta {
		if uint32(m.UID) > fst.LastUID { // "N:*" includes the last message even below N
			todo = append(todo, m)
		}
	}
	sort.Slice(todo, func(i, j int) bool { return todo[i].UID < todo[j].UID })
	total := int(sel.NumMessages)
	done := total - len(todo)
	progress(name, done, total)
	imported := 0
	for len(todo) > 0 {
		n, bytes := 0, int64(0)
		for n < len(todo) && n < imapBatchMessages && (n == 0 || bytes+todo[n].RFC822Size <= imapBatchBytes) {
			if src.Limit > 0 && already+imported+n >= src.Limit {
				break
			}
			bytes += todo[n].RFC822Size
			n++
		}
		if n == 0 {
			break // the limit
		}
		batch := todo[:n]
		todo = todo[n:]
		var uids imap.UIDSet
		for _, m := range batch {
			uids.AddNum(m.UID)
		}
		bodies, err := c.Fetch(uids, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		if err != nil {
			return imported, err
		}
		byUID := map[imap.UID][]byte{}
		for _, b := range bodies {
			if len(b.BodySection) > 0 {
				byUID[b.UID] = b.BodySection[0].Bytes
			}
		}
		var msgs []Message
		var sizes []int64
		for _, m := range batch {
			body, ok := byUID[m.UID]
			if !ok {
				continue // expunged meanwhile
			}
			flags := make([]string, len(m.Flags))
			for i, f := range m.Flags {
				flags[i] = string(f)
			}
			msgs = append(msgs, bytesMessage(body, flags, m.InternalDate, fmt.Sprintf("%s UID %d", l.Mailbox, m.UID)))
			sizes = append(sizes, int64(len(body)))
		}
		last := uint32(batch[len(batch)-1].UID)
		if len(msgs) > 0 {
			cur, err := s.Mailboxes.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: s.AccountID, MailboxId: mb.Id})
			if err != nil {
				return imported, err
			}
			fst.Pending = &pendingBatch{MailboxID: mb.Id, UIDNext: cur.Mailbox.UidNext, LastUID: last, Sizes: sizes}
			if err := src.save(st); err != nil {
				return imported, err
			}
			if _, err := s.Append(ctx, mb.Id, msgs); err != nil {
				return imported, err
			}
			crashHook()
		}
		fst.LastUID, fst.Pending = last, nil
		if err := src.save(st); err != nil {
			return imported, err
		}
		imported += len(msgs)
		done += len(batch)
		progress(name, done, total)
	}
	return imported, nil
}

// resolvePending finds out whether the batch in flight when the last run
// stopped was appended.
func (s *Store) resolvePending(ctx context.Context, fst *folderState) error {
	p := fst.Pending
	found, err := s.findBatch(ctx, p.MailboxID, p.UIDNext, p.Sizes)
	if err != nil {
		return err
	}
	if found {
		fst.LastUID = p.LastUID
	}
	fst.Pending = nil
	return nil
}
