package authz

import (
	"context"
	"errors"
	"strings"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// check decides whether a caller allowed on a method may send this request
// (one message of a stream). nil: allowed.
type check func(ctx context.Context, a *Authorizer, c Caller, req any) error

// rule is what each role must prove to call one method; a role that is not
// listed may not call it.
type rule map[Role]check

// The building blocks of the rules below.
var (
	// admin: mailctl, unrestricted.
	adminOnly = rule{Admin: allow}
	// A user's own mail: the access tier, for the account it holds a
	// session token of.
	userMail = rule{Admin: allow, Access: ownAccount}
	// The outbound queue runner's work.
	queueWork = rule{Admin: allow, Queue: allow}
	// Any authenticated tier.
	everyTier = rule{Admin: allow, Inbound: allow, Submission: allow, Queue: allow, Access: allow}
)

// rules is the whole policy, by full gRPC method name. Every method of the
// API must be here (the authorization test enumerates the API and fails
// for a method without a rule).
var rules = map[string]rule{
	// Domains, accounts, aliases and keys are the admin's.
	"/mailfleet.storage.v1.AccountService/CreateDomain":    adminOnly,
	"/mailfleet.storage.v1.AccountService/DeleteDomain":    adminOnly,
	"/mailfleet.storage.v1.AccountService/ListDomains":     adminOnly,
	"/mailfleet.storage.v1.AccountService/CreateAccount":   adminOnly,
	"/mailfleet.storage.v1.AccountService/DeleteAccount":   adminOnly,
	"/mailfleet.storage.v1.AccountService/ListAccounts":    adminOnly,
	"/mailfleet.storage.v1.AccountService/SetPassword":     adminOnly,
	"/mailfleet.storage.v1.AccountService/SetQuota":        adminOnly,
	"/mailfleet.storage.v1.AccountService/SetDisabled":     adminOnly,
	"/mailfleet.storage.v1.AccountService/AddAlias":        adminOnly,
	"/mailfleet.storage.v1.AccountService/RemoveAlias":     adminOnly,
	"/mailfleet.storage.v1.AccountService/GenerateDKIMKey": adminOnly,
	// A logged-in user may read their own account (quota, aliases).
	"/mailfleet.storage.v1.AccountService/GetAccount": {Admin: allow, Access: ownAccount, Submission: ownAccount},
	// Logins: the tiers that take passwords. The token they get back is
	// bound to the tier that asked.
	"/mailfleet.storage.v1.AccountService/Authenticate":   {Admin: allow, Access: allow, Submission: allow},
	"/mailfleet.storage.v1.AccountService/RefreshSession": {Access: allow, Submission: allow},
	// Recipient lookups: the MX and submission check RCPT TO; the queue
	// runner re-checks local recipients.
	"/mailfleet.storage.v1.AccountService/ResolveRecipient": {Admin: allow, Inbound: allow, Submission: allow, Queue: allow},
	// POP3's maildrop lock (the access tier takes no other lock: one
	// user's session must not fill etcd with locks of its own naming).
	"/mailfleet.storage.v1.AccountService/LockAccount":      {Admin: allow, Access: ownMaildropLock},
	"/mailfleet.storage.v1.AccountService/RenewAccountLock": userMail,
	"/mailfleet.storage.v1.AccountService/UnlockAccount":    userMail,
	// Submission signs with the key of a domain the user has an address in.
	"/mailfleet.storage.v1.AccountService/GetDKIMKey":    {Admin: allow, Submission: ownDomain},
	"/mailfleet.storage.v1.AccountService/ListDKIMKeys":  adminOnly,
	"/mailfleet.storage.v1.AccountService/RemoveDKIMKey": adminOnly,

	"/mailfleet.storage.v1.MailboxService/ListMailboxes": userMail,
	"/mailfleet.storage.v1.MailboxService/GetMailbox":    userMail,
	"/mailfleet.storage.v1.MailboxService/CreateMailbox": userMail,
	"/mailfleet.storage.v1.MailboxService/DeleteMailbox": userMail,
	"/mailfleet.storage.v1.MailboxService/RenameMailbox": userMail,
	"/mailfleet.storage.v1.MailboxService/SetSubscribed": userMail,
	"/mailfleet.storage.v1.MailboxService/ClaimRecent":   userMail,

	"/mailfleet.storage.v1.MessageService/AppendMessage":   userMail,
	"/mailfleet.storage.v1.MessageService/AppendMessages":  userMail,
	"/mailfleet.storage.v1.MessageService/ListMessages":    userMail,
	"/mailfleet.storage.v1.MessageService/GetMessageBody":  userMail,
	"/mailfleet.storage.v1.MessageService/StoreFlags":      userMail,
	"/mailfleet.storage.v1.MessageService/CopyMessages":    userMail,
	"/mailfleet.storage.v1.MessageService/MoveMessages":    userMail,
	"/mailfleet.storage.v1.MessageService/ExpungeMessages": userMail,
	"/mailfleet.storage.v1.MessageService/ListVanished":    userMail,

	"/mailfleet.storage.v1.WatchService/Watch": userMail,

	// Delivery: the MX for mail from the Internet, submission as the
	// logged-in sender, the queue runner for retries and DSNs.
	// Only submission queues mail to other domains for a user: the MX never
	// does, the queue runner only as a DSN from the null sender.
	"/mailfleet.storage.v1.DeliveryService/Deliver": {Admin: allow, Inbound: localOnly, Submission: ownSender, Queue: localOrDSN},

	"/mailfleet.storage.v1.QueueService/Enqueue":       {Admin: allow, Submission: ownSender},
	"/mailfleet.storage.v1.QueueService/Lease":         queueWork,
	"/mailfleet.storage.v1.QueueService/RenewLease":    queueWork,
	"/mailfleet.storage.v1.QueueService/GetQueueBody":  queueWork,
	"/mailfleet.storage.v1.QueueService/RecordAttempt": queueWork,
	"/mailfleet.storage.v1.QueueService/Complete":      queueWork,
	"/mailfleet.storage.v1.QueueService/Bounce":        queueWork,
	"/mailfleet.storage.v1.QueueService/Release":       queueWork,
	"/mailfleet.storage.v1.QueueService/DeliverQueued": queueWork,
	// The runner's queue-depth metric lists the queue.
	"/mailfleet.storage.v1.QueueService/ListQueue":       queueWork,
	"/mailfleet.storage.v1.QueueService/GetQueueItem":    adminOnly,
	"/mailfleet.storage.v1.QueueService/RetryQueueItem":  adminOnly,
	"/mailfleet.storage.v1.QueueService/DeleteQueueItem": adminOnly,

	// Consistency check, backup and restore: whole-cell operations.
	"/mailfleet.storage.v1.MaintenanceService/Check":   adminOnly,
	"/mailfleet.storage.v1.MaintenanceService/Backup":  adminOnly,
	"/mailfleet.storage.v1.MaintenanceService/Restore": adminOnly,

	// Health checks answer every authenticated tier (readiness probes).
	"/grpc.health.v1.Health/Check": everyTier,
	"/grpc.health.v1.Health/Watch": everyTier,
	"/grpc.health.v1.Health/List":  everyTier,
}

// Methods returns every method that has a rule (for tests).
func Methods() []string {
	out := make([]string, 0, len(rules))
	for m := range rules {
		out = append(out, m)
	}
	return out
}

// Allowed reports whether role may call method at all (for tests).
func Allowed(method string, role Role) bool {
	_, ok := rules[method][role]
	return ok
}

func allow(context.Context, *Authorizer, Caller, any) error { return nil }

var (
	errNoSession    = errors.New("this call needs a user's session token (log the user in first)")
	errOtherAccount = errors.New("the session token is for another account")
	errNotSender    = errors.New("the sender is not an address of the logged-in account")
	errNotDomain    = errors.New("the logged-in account has no address in this domain")
)

// session returns the caller's session, which must have been issued to the
// caller's own tier.
func session(c Caller) (*Session, error) {
	if c.Session == nil || c.Session.Role != c.Role {
		return nil, errNoSession
	}
	return c.Session, nil
}

var (
	errRelay   = errors.New("this tier may not queue mail for other domains")
	errNotLock = errors.New("the access tier takes only the maildrop lock")
)

// localOnly: a delivery to local mailboxes, nothing queued outbound (the
// MX; a stolen MX identity must not make storage an open relay).
func localOnly(_ context.Context, _ *Authorizer, _ Caller, req any) error {
	if md := req.(*storagev1.DeliverRequest).GetMetadata(); md != nil && md.Outbound != nil {
		return errRelay
	}
	return nil
}

// localOrDSN: the queue runner delivers local items and DSNs; the only mail
// it queues outbound is a DSN: from the null sender, for no account, with
// no local recipients queued in passing.
func localOrDSN(_ context.Context, _ *Authorizer, _ Caller, req any) error {
	md := req.(*storagev1.DeliverRequest).GetMetadata()
	if md == nil || md.Outbound == nil {
		return nil
	}
	if md.Outbound.AccountId != "" || md.Outbound.MailFrom != "" || md.QueueFailedRecipients {
		return errRelay
	}
	return nil
}

// ownMaildropLock: the maildrop lock of the session's own account.
func ownMaildropLock(ctx context.Context, a *Authorizer, c Caller, req any) error {
	if err := ownAccount(ctx, a, c, req); err != nil {
		return err
	}
	if r, ok := req.(*storagev1.LockAccountRequest); ok && r.Name != "maildrop" {
		return errNotLock
	}
	return nil
}

// ownAccount: the request names the account of the caller's session.
func ownAccount(_ context.Context, _ *Authorizer, c Caller, req any) error {
	s, err := session(c)
	if err != nil {
		return err
	}
	account, carries := accountOf(req)
	if !carries {
		return nil // a body chunk of a stream whose header was checked
	}
	if account != s.Account {
		return errOtherAccount
	}
	return nil
}

// accountOf returns the account a request (or a stream message) names;
// carries is false for a stream message that names none (a body chunk).
func accountOf(req any) (account string, carries bool) {
	switch r := req.(type) {
	case *storagev1.GetAccountRequest:
		if r.Address != "" {
			return "", true // by address: admins only
		}
		return r.AccountId, true
	case *storagev1.AppendMessageRequest:
		if md := r.GetMetadata(); md != nil {
			return md.AccountId, true
		}
		return "", false
	case *storagev1.AppendMessagesRequest:
		if t := r.GetTarget(); t != nil {
			return t.AccountId, true
		}
		return "", false
	case interface{ GetAccountId() string }:
		return r.GetAccountId(), true
	}
	return "", true // names no account: refused to a user-bound caller
}

// ownSender: submission delivers and enqueues only as the logged-in user,
// with an envelope sender that is one of the account's addresses.
func ownSender(ctx context.Context, a *Authorizer, c Caller, req any) error {
	s, err := session(c)
	if err != nil {
		return err
	}
	var account string
	var senders []string
	switch r := req.(type) {
	case *storagev1.DeliverRequest:
		md := r.GetMetadata()
		if md == nil {
			return nil // a body chunk
		}
		senders = append(senders, md.MailFrom)
		if out := md.Outbound; out != nil {
			account = out.AccountId
			senders = append(senders, out.MailFrom)
		} else {
			account = s.Account
		}
	case *storagev1.EnqueueRequest:
		md := r.GetMetadata()
		if md == nil {
			return nil
		}
		account, senders = md.AccountId, []string{md.MailFrom}
	default:
		return errNotSender
	}
	if account != s.Account {
		return errOtherAccount
	}
	addrs, err := a.dir.AccountAddresses(ctx, s.Account)
	if err != nil {
		return err
	}
	for _, from := range senders {
		if !owns(addrs, from) {
			return errNotSender
		}
	}
	return nil
}

// ownDomain: the DKIM key of a domain the logged-in account has an address in.
func ownDomain(ctx context.Context, a *Authorizer, c Caller, req any) error {
	s, err := session(c)
	if err != nil {
		return err
	}
	r, ok := req.(*storagev1.GetDKIMKeyRequest)
	if !ok {
		return errNotDomain
	}
	addrs, err := a.dir.AccountAddresses(ctx, s.Account)
	if err != nil {
		return err
	}
	domain := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(r.Domain)), ".")
	for _, addr := range addrs {
		if _, d, ok := strings.Cut(addr, "@"); ok && strings.EqualFold(d, domain) {
			return nil
		}
	}
	return errNotDomain
}

// owns reports whether address is one of addrs, as the submission tier
// compares them (case-insensitive, surrounding space ignored).
func owns(addrs []string, address string) bool {
	address = strings.TrimSpace(address)
	if address == "" {
		return false
	}
	for _, a := range addrs {
		if strings.EqualFold(a, address) {
			return true
		}
	}
	return false
}
