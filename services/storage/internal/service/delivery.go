package service

import (
	"errors"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// accountsPerTxn bounds the recipients' accounts committed in one transaction
// (each costs two compares and three writes).
const accountsPerTxn = 30

// maxRecipients bounds one delivery (RFC 5321 4.5.3.1.8 asks for at least 100).
const maxRecipients = 1000

func (s *Server) Deliver(stream storagev1.DeliveryService_DeliverServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return toStatus(err)
	}
	meta := first.GetMetadata()
	if meta == nil {
		return errInvalid("the first request must carry the metadata")
	}
	if len(meta.Recipients)+len(meta.Outbound.GetRecipients()) == 0 {
		return errInvalid("no recipients")
	}
	if len(meta.Recipients) > maxRecipients || len(meta.Outbound.GetRecipients()) > maxRecipients {
		return errInvalid("too many recipients")
	}
	if meta.SizeHint > uint64(s.cfg.MaxMessageSize) {
		return fail(reasonTooLarge, "message larger than %d bytes", s.cfg.MaxMessageSize)
	}
	var outbound *records.QueueRecord
	if meta.Outbound != nil {
		if outbound, err = s.newQueueRecord(meta.Outbound); err != nil {
			return err
		}
	}

	// Resolve every recipient first; each account is delivered to once, even
	// when several of its addresses were given.
	resp := &storagev1.DeliverResponse{}
	// Recipients that cannot take the message now, not queued yet
	// (queue_failed_recipients): they are queued with the first step that
	// delivers to someone. Those gone since RCPT start the list.
	var waiting []*storagev1.RecipientResult
	var accounts []string
	byAccount := map[string][]*storagev1.RecipientResult{}
	viaAddresses := map[string][]string{} // account → directory entries that led to it
	for _, rcpt := range meta.Recipients {
		r := &storagev1.RecipientResult{Recipient: rcpt}
		resp.Results = append(resp.Results, r)
		local, domain, err := normalizeAddress(rcpt)
		if err != nil {
			r.Status, r.Detail = storagev1.RecipientResult_STATUS_UNKNOWN_USER, "invalid address"
			continue
		}
		// The directory only: deliverOne reads the account itself.
		l, err := s.routeAddress(ctx, local, domain)
		if err != nil {
			return toStatus(err)
		}
		switch {
		case !l.domainKnown:
			r.Status = storagev1.RecipientResult_STATUS_NOT_LOCAL
		case len(l.routes) == 0:
			r.Status = storagev1.RecipientResult_STATUS_UNKNOWN_USER
			waiting = append(waiting, r)
		default:
			rt := l.routes[0]
			r.AccountId = rt.account
			if _, seen := byAccount[r.AccountId]; !seen {
				accounts = append(accounts, r.AccountId)
			}
			byAccount[r.AccountId] = append(byAccount[r.AccountId], r)
			viaAddresses[r.AccountId] = append(viaAddresses[r.AccountId], rt.address)
		}
	}

	up, err := s.receiveBody(ctx, chunkReader(func() (*storagev1.BodyChunk, bool, error) {
		req, err := stream.Recv()
		return req.GetChunk(), req.GetMetadata() != nil, err
	}))
	if err != nil {
		return err
	}
	resp.Size = up.size
	internalDate := timestamppb.New(timeOr(meta.InternalDate, time.Now()))

	refs := 0
	intentEnded := false
	for start := 0; start < len(accounts) || (start == 0 && outbound != nil); start += accountsPerTxn {
		batch := accounts[start:min(start+accountsPerTxn, len(accounts))]
		withQueue := start == 0 && outbound != nil
		last := start+accountsPerTxn >= len(accounts)
		var added int
		var failed []*storagev1.RecipientResult // this step's full or vanished accounts
		var localQueue *records.QueueRecord
		var stagedAny bool // this step references the body
		// One account (the common case): join the account's group commit,
		// so concurrent deliveries to a busy mailbox share transactions
		// instead of conflicting. Several accounts: one transaction for all.
		// An INBOX held by a bulk copy's staging makes the step wait.
		run := func(fn func(tx *etcdtx.Tx) error) (int64, error) {
			return s.waitBusy(ctx, func() (int64, error) { return etcdtx.Run(ctx, s.etcd, fn) })
		}
		if len(batch) == 1 && !withQueue {
			run = func(fn func(tx *etcdtx.Tx) error) (int64, error) { return s.commitWaiting(ctx, batch[0], fn) }
		}
		_, err := run(func(tx *etcdtx.Tx) error {
			added, failed, localQueue = 0, nil, nil
			for _, account := range batch {
				rs := byAccount[account]
				sp := tx.Savepoint()
				uid, mbID, err := s.deliverOne(tx, account, viaAddresses[account], meta.Junk, up, internalDate)
				status, detail := storagev1.RecipientResult_STATUS_DELIVERED, ""
				switch storagev1.ReasonOf(err) {
				case storagev1.ErrorReason_ERROR_REASON_UNSPECIFIED:
					if errors.Is(err, errDisabled) {
						status, detail = storagev1.RecipientResult_STATUS_DISABLED, "mailbox disabled"
						break
					}
					if errors.Is(err, errMoved) {
						// Queued with the others that wait (the queue
						// resolves again), or the sender retries.
						status, detail = storagev1.RecipientResult_STATUS_TEMPORARY_FAILURE, "address changed; try again"
						break
					}
					if err != nil {
						return err // etcd trouble: the whole step fails
					}
					added++
				case reasonOverQuota:
					status, detail = storagev1.RecipientResult_STATUS_OVER_QUOTA, "mailbox full"
				case reasonAccountNotFound, reasonMailboxNotFound:
					status, detail = storagev1.RecipientResult_STATUS_UNKNOWN_USER, "account or INBOX gone"
				default:
					return err
				}
				if err != nil {
					tx.Rollback(sp)
				}
				for _, r := range rs {
					r.Status, r.Detail, r.Uid, r.MailboxId = status, detail, uid, mbID
				}
				if err != nil {
					failed = append(failed, rs[0]) // one address per account: one copy later
				}
			}
			n := added
			if withQueue {
				outbound.BodyKey, outbound.HeaderSize, outbound.CrlfSize = up.key, up.headerSize, up.crlfSize
				outbound.Item.Size = up.size
				s.stageQueueRecord(tx, outbound)
				n++
			}
			accepted := refs+added > 0 || outbound != nil // someone gets the message
			if meta.QueueFailedRecipients && accepted && len(waiting)+len(failed) > 0 {
				localQueue = s.newLocalQueueRecord(meta.MailFrom, append(slices.Clone(waiting), failed...), up)
				s.stageQueueRecord(tx, localQueue)
				n++
			}
			stagedAny = n > 0
			if n == 0 {
				return nil
			}
			var err error
			if refs == 0 {
				err = s.newBodyRef(tx, up, uint32(n))
			} else {
				err = s.addBodyRefs(tx, up, uint32(n))
			}
			if last {
				s.finishUpload(tx, up)
			}
			return err
		})
		if err != nil {
			if refs == 0 && !etcdtx.IsUncertain(err) {
				s.discardBody(up.key)
			}
			return toStatus(err)
		}
		intentEnded = intentEnded || last && stagedAny
		refs += added
		if withQueue {
			refs++
			resp.QueueId = outbound.Item.Id
		}
		waiting = append(waiting, failed...)
		if localQueue != nil {
			refs++
			resp.LocalQueueId = localQueue.Item.Id
			markQueued(resp.Results, waiting)
			waiting = nil
		}
	}
	if refs == 0 {
		s.discardBody(up.key)
	} else if !intentEnded {
		s.forgetUpload(up.key)
	}
	for _, r := range resp.Results {
		s.log.Info("delivery", "recipient", r.Recipient, "status", strings.TrimPrefix(r.Status.String(), "STATUS_"),
			"account", r.AccountId, "uid", r.Uid, "size", up.size)
	}
	return stream.SendAndClose(resp)
}

// markQueued sets the status QUEUED on the queued results and on every
// other failed address of the same accounts (aliases).
func markQueued(results, queued []*storagev1.RecipientResult) {
	inQueue := map[*storagev1.RecipientResult]bool{}
	accounts := map[string]bool{}
	for _, r := range queued {
		inQueue[r] = true
		if r.AccountId != "" {
			accounts[r.AccountId] = true
		}
	}
	for _, r := range results {
		if r.Status != storagev1.RecipientResult_STATUS_DELIVERED && (inQueue[r] || accounts[r.AccountId]) {
			r.Status, r.Detail = storagev1.RecipientResult_STATUS_QUEUED, r.Detail+": queued"
		}
	}
}

// newLocalQueueRecord is a queue item that delivers up's body to the given
// local recipients later (their mailbox was full, or they are gone and the
// attempt will fail into a DSN). A sender address that does not parse gets
// no DSN rather than failing the whole delivery.
func (s *Server) newLocalQueueRecord(mailFrom string, rs []*storagev1.RecipientResult, up *upload) *records.QueueRecord {
	meta := &storagev1.EnqueueRequest_Metadata{MailFrom: mailFrom}
	for _, r := range rs {
		meta.Recipients = append(meta.Recipients, r.Recipient)
	}
	rec, err := s.newQueueRecord(meta)
	if err != nil {
		meta.MailFrom = ""
		rec, _ = s.newQueueRecord(meta) // recipients parsed when they were resolved
	}
	rec.Item.Local = true
	rec.Item.Size = up.size
	rec.BodyKey, rec.HeaderSize, rec.CrlfSize = up.key, up.headerSize, up.crlfSize
	return rec
}

// errDisabled: the account may not receive now (it was disabled after the
// directory said where the address goes).
var errDisabled = errors.New("account disabled")

// errMoved: an address no longer leads to the account the replica's
// directory cache named (an alias moved a moment ago, the watch has not
// told this replica yet).
var errMoved = errors.New("address no longer belongs to the account")

// deliverOne stages the delivery of a body to one account's INBOX, or to its
// Junk mailbox when junk is set (a content filter quarantined the message)
// and the account has one: every account is made with one, but users may
// delete or rename it.
//
// via lists the directory entries ("local@domain", "@domain") that led to
// the account; each must still be the account's, checked in the transaction
// (the account record changes with every alias change), because they may
// come from the replica's cache.
func (s *Server) deliverOne(tx *etcdtx.Tx, account string, via []string, junk bool, up *upload, internalDate *timestamppb.Timestamp) (uint32, string, error) {
	// What a delivery reads first, in one round trip.
	first := []string{s.keys.Account(account), s.keys.Quota(account), s.keys.Name(account, "INBOX")}
	if junk {
		first = append(first, s.keys.Name(account, "Junk"))
	}
	if err := tx.Prefetch(first); err != nil {
		return 0, "", err
	}
	// The account is checked here, in the transaction, not where the
	// address was resolved: that answer may come from the replica's cache.
	rec, err := s.loadAccount(tx, account)
	if err != nil {
		return 0, "", err
	}
	if rec.Disabled {
		return 0, "", errDisabled
	}
	for _, a := range via {
		if !strings.EqualFold(a, rec.Address) && !slices.ContainsFunc(rec.Aliases, func(alias string) bool { return strings.EqualFold(a, alias) }) {
			s.recipients.clear() // this replica's answers are behind
			return 0, "", errMoved
		}
	}
	q, err := s.loadQuota(tx, account)
	if err != nil {
		return 0, "", err
	}
	mailbox := "INBOX"
	if junk {
		_, ok, err := tx.Get(s.keys.Name(account, "Junk"))
		if err != nil {
			return 0, "", err
		}
		if ok {
			mailbox = "Junk"
		}
	}
	id, err := s.mailboxIDByName(tx, account, mailbox)
	if err != nil {
		return 0, "", err
	}
	mb, err := s.loadMailbox(tx, account, id)
	if err != nil {
		return 0, "", err
	}
	msg := &storagev1.Message{
		Size: up.size, InternalDate: internalDate,
		BodyKey: up.key, HeaderSize: up.headerSize, CrlfSize: up.crlfSize,
	}
	if err := s.addMessage(tx, account, mb, q, msg); err != nil {
		return 0, "", err
	}
	s.saveMailbox(tx, account, mb)
	s.saveQuota(tx, account, q)
	return msg.Uid, mb.Id, nil
}
