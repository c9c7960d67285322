package service

import (
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
)

// A subscription normally lives in its mailbox's record (Mailbox.subscribed).
// RFC 3501 6.3.6 (and RFC 9051 6.3.7) keeps a subscription apart from the
// mailbox: the server "MUST NOT unilaterally remove an existing mailbox
// name from the subscription list even if a mailbox by that name no longer
// exists", and a name may be subscribed before it exists. Such names are
// kept under accounts/<id>/subscriptions/<name> (IMAP LIST answers them
// \NonExistent); creating the mailbox moves the subscription into its
// record.

// setSubscriptionOnly subscribes or unsubscribes a name that has no
// mailbox; unsubscribing a name that is not subscribed is MAILBOX_NOT_FOUND.
func (s *Server) setSubscriptionOnly(tx *etcdtx.Tx, account, name string, subscribed bool) error {
	if _, err := s.loadQuota(tx, account); err != nil {
		return err // no such account
	}
	key := s.keys.Subscription(account, name)
	_, exists, err := tx.Get(key)
	if err != nil {
		return err
	}
	switch {
	case subscribed && !exists:
		tx.Put(key, nil)
	case !subscribed && exists:
		tx.Delete(key)
	case !subscribed:
		return fail(reasonMailboxNotFound, "no such mailbox or subscription")
	}
	return nil
}

// takeSubscription removes the kept subscription of name, if any, and
// reports whether there was one.
func (s *Server) takeSubscription(tx *etcdtx.Tx, account, name string) (bool, error) {
	key := s.keys.Subscription(account, name)
	_, exists, err := tx.Get(key)
	if err != nil || !exists {
		return false, err
	}
	tx.Delete(key)
	return true, nil
}
