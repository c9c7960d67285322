package service

import (
	"context"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
)

// Separator is the mailbox hierarchy separator.
const Separator = "/"

// normalizeMailboxName checks a mailbox name and spells INBOX canonically.
// Names are UTF-8 (IMAP's modified UTF-7 is decoded by the access tier).

// firstModseq is a new mailbox's HIGHESTMODSEQ, before any change: RFC
// 7162's mod-sequence-value is positive (section 7), so even an empty
// mailbox must answer a HIGHESTMODSEQ of at least 1, and its first change
// must then come after it.
const firstModseq = 1

func normalizeMailboxName(name string) (string, error) {
	if name == "" || len(name) > 512 || !utf8.ValidString(name) {
		return "", errInvalid("invalid mailbox name")
	}
	segments := strings.Split(name, Separator)
	if strings.EqualFold(segments[0], "INBOX") {
		segments[0] = "INBOX"
	}
	for _, seg := range segments {
		if seg == "" || seg == "." || seg == ".." || len(seg) > 255 {
			return "", errInvalid("invalid mailbox name %q", name)
		}
		for _, c := range seg {
			if unicode.IsControl(c) || c == '*' || c == '%' || c == utf8.RuneError {
				return "", errInvalid("invalid mailbox name %q", name)
			}
		}
	}
	return strings.Join(segments, Separator), nil
}

// parents returns the ancestors of name, outermost first.
func parents(name string) []string {
	var out []string
	for i := 0; i < len(name); i++ {
		if name[i] == Separator[0] {
			out = append(out, name[:i])
		}
	}
	return out
}

func (s *Server) ListMailboxes(ctx context.Context, req *storagev1.ListMailboxesRequest) (*storagev1.ListMailboxesResponse, error) {
	if req.AccountId == "" {
		return nil, errInvalid("account id is required")
	}
	resp, err := s.etcd.Txn(ctx).Then(
		clientv3.OpGet(s.keys.Quota(req.AccountId), clientv3.WithCountOnly()),
		clientv3.OpGet(s.keys.Mailboxes(req.AccountId), clientv3.WithPrefix()),
		clientv3.OpGet(s.keys.Subscriptions(req.AccountId), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return nil, toStatus(err)
	}
	if resp.Responses[0].GetResponseRange().Count == 0 {
		return nil, fail(reasonAccountNotFound, "no such account")
	}
	out := &storagev1.ListMailboxesResponse{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		mb := &storagev1.Mailbox{}
		if err := proto.Unmarshal(kv.Value, mb); err != nil {
			return nil, toStatus(err)
		}
		out.Mailboxes = append(out.Mailboxes, mb)
	}
	sort.Slice(out.Mailboxes, func(i, j int) bool { return out.Mailboxes[i].Name < out.Mailboxes[j].Name })
	prefix := s.keys.Subscriptions(req.AccountId)
	for _, kv := range resp.Responses[2].GetResponseRange().Kvs {
		out.SubscribedMissing = append(out.SubscribedMissing, strings.TrimPrefix(string(kv.Key), prefix))
	}
	return out, nil
}

// mailboxIDByName resolves a name within tx.
func (s *Server) mailboxIDByName(tx *etcdtx.Tx, account, name string) (string, error) {
	id, ok, err := tx.Get(s.keys.Name(account, name))
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fail(reasonMailboxNotFound, "no mailbox named %q", name)
	}
	return string(id), nil
}

func (s *Server) GetMailbox(ctx context.Context, req *storagev1.GetMailboxRequest) (*storagev1.GetMailboxResponse, error) {
	var mb *storagev1.Mailbox
	// A read-only "transaction": Run commits nothing when nothing is staged.
	_, err := etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		id := req.MailboxId
		if id == "" {
			name, err := normalizeMailboxName(req.Name)
			if err != nil {
				return err
			}
			if id, err = s.mailboxIDByName(tx, req.AccountId, name); err != nil {
				return err
			}
		}
		var err error
		mb, err = s.loadMailbox(tx, req.AccountId, id)
		return err
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.GetMailboxResponse{Mailbox: mb}, nil
}

// createMailbox stages a new mailbox and returns it; missing parents are
// created too, as RFC 9051 6.3.4 suggests.
func (s *Server) createMailbox(tx *etcdtx.Tx, account, name string, use storagev1.SpecialUse, subscribed bool) (*storagev1.Mailbox, error) {
	rec, err := s.loadAccount(tx, account)
	if err != nil {
		return nil, err
	}
	var created *storagev1.Mailbox
	for _, n := range append(parents(name), name) {
		if _, exists, err := tx.Get(s.keys.Name(account, n)); err != nil {
			return nil, err
		} else if exists {
			if n == name {
				return nil, fail(reasonMailboxExists, "mailbox %q exists", name)
			}
			continue
		}
		mb := &storagev1.Mailbox{Id: newID(), Name: n, Subscribed: subscribed, UidValidity: rec.NextUidValidity, UidNext: 1,
			HighestModseq: firstModseq, ExpungeLog: &storagev1.ExpungeLog{}}
		// A subscription kept for a name without a mailbox (subscriptions.go)
		// becomes the new mailbox's.
		if kept, err := s.takeSubscription(tx, account, n); err != nil {
			return nil, err
		} else if kept {
			mb.Subscribed = true
		}
		if n == name {
			mb.SpecialUse = use
			created = mb
		}
		rec.NextUidValidity++
		s.saveMailbox(tx, account, mb)
		tx.Put(s.keys.Name(account, n), []byte(mb.Id))
	}
	tx.Put(s.keys.Account(account), marshal(rec))
	return created, nil
}

func (s *Server) CreateMailbox(ctx context.Context, req *storagev1.CreateMailboxRequest) (*storagev1.CreateMailboxResponse, error) {
	name, err := normalizeMailboxName(req.Name)
	if err != nil {
		return nil, err
	}
	var mb *storagev1.Mailbox
	_, err = s.committer.do(ctx, req.AccountId, func(tx *etcdtx.Tx) error {
		var err error
		mb, err = s.createMailbox(tx, req.AccountId, name, req.SpecialUse, req.Subscribed)
		return err
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.CreateMailboxResponse{Mailbox: mb}, nil
}

func (s *Server) SetSubscribed(ctx context.Context, req *storagev1.SetSubscribedRequest) (*storagev1.SetSubscribedResponse, error) {
	name, err := normalizeMailboxName(req.Name)
	if err != nil {
		return nil, err
	}
	_, err = s.committer.do(ctx, req.AccountId, func(tx *etcdtx.Tx) error {
		id, err := s.mailboxIDByName(tx, req.AccountId, name)
		if storagev1.ReasonOf(err) == reasonMailboxNotFound {
			// RFC 3501 6.3.6: a name without a mailbox may be subscribed.
			return s.setSubscriptionOnly(tx, req.AccountId, name, req.Subscribed)
		}
		if err != nil {
			return err
		}
		mb, err := s.loadMailbox(tx, req.AccountId, id)
		if err != nil {
			return err
		}
		if mb.Subscribed != req.Subscribed {
			mb.Subscribed = req.Subscribed
			s.saveMailbox(tx, req.AccountId, mb)
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.SetSubscribedResponse{}, nil
}

func (s *Server) DeleteMailbox(ctx context.Context, req *storagev1.DeleteMailboxRequest) (*storagev1.DeleteMailboxResponse, error) {
	name, err := normalizeMailboxName(req.Name)
	if err != nil {
		return nil, err
	}
	if name == "INBOX" {
		return nil, fail(reasonProtected, "INBOX cannot be deleted")
	}
	// Children first: deleting a parent would leave them unreachable in
	// hierarchy-aware clients (Dovecot refuses the same way).
	children, err := s.etcd.Get(ctx, s.keys.Name(req.AccountId, name+Separator), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return nil, toStatus(err)
	}
	if children.Count > 0 {
		return nil, fail(reasonHasChildren, "mailbox %q has children", name)
	}
	// One transaction takes the mailbox away from the client's view (name
	// and record); its entries are removed afterwards, step by step, and a
	// cleanup mark lets any replica finish that if this one stops.
	var id string
	_, err = s.commitWaiting(ctx, req.AccountId, func(tx *etcdtx.Tx) error {
		var err error
		if id, err = s.mailboxIDByName(tx, req.AccountId, name); err != nil {
			return err
		}
		mb, err := s.loadMailbox(tx, req.AccountId, id)
		if err != nil {
			return err
		}
		// Not while a bulk copy stages into it: its copies would outlive it.
		if err := checkWritable(req.AccountId, mb, ""); err != nil {
			return err
		}
		tx.Delete(s.keys.Name(req.AccountId, name))
		tx.Delete(s.keys.Mailbox(req.AccountId, id))
		if mb.Subscribed {
			// RFC 3501 6.3.6: the subscription outlives the mailbox.
			tx.Put(s.keys.Subscription(req.AccountId, name), nil)
		}
		// Always, even when the counters say empty: the entries decide.
		tx.Put(s.keys.Deleting(req.AccountId, id), marshal(mb))
		tx.Put(s.keys.Cleanup(req.AccountId, id), cleanupStamp())
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("mailbox deleted", "account", req.AccountId, "mailbox", id)
	if err := s.finishMailboxDelete(ctx, req.AccountId, id); err != nil {
		// The mailbox is gone for the client; the rest is housekeeping
		// that the sweeper's replica resumes.
		s.log.Warn("emptying a deleted mailbox was interrupted; it will be resumed", "account", req.AccountId, "mailbox", id, "err", err)
	}
	return &storagev1.DeleteMailboxResponse{}, nil
}

func (s *Server) RenameMailbox(ctx context.Context, req *storagev1.RenameMailboxRequest) (*storagev1.RenameMailboxResponse, error) {
	from, err := normalizeMailboxName(req.Name)
	if err != nil {
		return nil, err
	}
	to, err := normalizeMailboxName(req.NewName)
	if err != nil {
		return nil, err
	}
	if from == to || strings.HasPrefix(to, from+Separator) {
		return nil, errInvalid("cannot rename %q to %q", from, to)
	}
	if to == "INBOX" {
		return nil, fail(reasonMailboxExists, "INBOX exists")
	}
	var renamed *storagev1.Mailbox
	_, err = s.committer.do(ctx, req.AccountId, func(tx *etcdtx.Tx) error {
		// Reading the account record makes a concurrent CREATE (which bumps
		// its next UIDVALIDITY) conflict with this rename, so no child
		// created meanwhile is left behind under the old name.
		if _, err := s.loadAccount(tx, req.AccountId); err != nil {
			return err
		}
		id, err := s.mailboxIDByName(tx, req.AccountId, from)
		if err != nil {
			return err
		}
		if _, exists, err := tx.Get(s.keys.Name(req.AccountId, to)); err != nil {
			return err
		} else if exists {
			return fail(reasonMailboxExists, "mailbox %q exists", to)
		}
		// The mailbox and its children (INBOX's children stay: RFC 9051 6.3.6).
		moves := map[string]string{from: id}
		if from != "INBOX" {
			resp, err := s.etcd.Get(ctx, s.keys.Name(req.AccountId, from+Separator), clientv3.WithPrefix())
			if err != nil {
				return err
			}
			for _, kv := range resp.Kvs {
				moves[strings.TrimPrefix(string(kv.Key), s.keys.Names(req.AccountId))] = string(kv.Value)
			}
		}
		for oldName, mbID := range moves {
			newName := to + strings.TrimPrefix(oldName, from)
			mb, err := s.loadMailbox(tx, req.AccountId, mbID)
			if err != nil {
				return err
			}
			if _, exists, err := tx.Get(s.keys.Name(req.AccountId, newName)); err != nil {
				return err
			} else if exists {
				return fail(reasonMailboxExists, "mailbox %q exists", newName)
			}
			mb.Name = newName
			s.saveMailbox(tx, req.AccountId, mb)
			tx.Delete(s.keys.Name(req.AccountId, oldName))
			tx.Put(s.keys.Name(req.AccountId, newName), []byte(mbID))
			if oldName == from {
				renamed = mb
			}
		}
		// Missing parents of the new name are created.
		for _, p := range parents(to) {
			if _, exists, err := tx.Get(s.keys.Name(req.AccountId, p)); err != nil {
				return err
			} else if !exists {
				if _, err := s.createMailbox(tx, req.AccountId, p, storagev1.SpecialUse_SPECIAL_USE_NONE, true); err != nil {
					return err
				}
			}
		}
		// Renaming INBOX moves its messages away and leaves a new, empty INBOX.
		if from == "INBOX" {
			if _, err := s.createMailbox(tx, req.AccountId, "INBOX", storagev1.SpecialUse_SPECIAL_USE_NONE, true); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.RenameMailboxResponse{Mailbox: renamed}, nil
}
