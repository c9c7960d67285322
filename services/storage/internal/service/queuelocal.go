package service

import (
	"context"
	"errors"

	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// DeliverQueued delivers a local queue item (its recipients' mailboxes were
// full, or they were gone, when it arrived) from the body it already has: each
// delivery is one more reference to that body, so an attempt writes no object
// and moves no bytes through the runner. A recipient delivered is marked so
// in the same transaction as its INBOX entry: a runner that dies before
// recording the attempt does not deliver it twice.
func (s *Server) DeliverQueued(ctx context.Context, req *storagev1.DeliverQueuedRequest) (*storagev1.DeliverQueuedResponse, error) {
	rec, err := s.getQueueRecord(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	if !rec.Item.Local {
		return nil, errInvalid("queue item %s is not for local recipients", req.Id)
	}
	out := &storagev1.DeliverQueuedResponse{}
	var accounts []string
	via := map[string][]string{} // account → directory entries that led to it
	byAccount := map[string][]*storagev1.RecipientOutcome{}
	for _, rc := range rec.Item.Recipients {
		if rc.State != storagev1.QueueRecipient_STATE_PENDING {
			continue
		}
		o := &storagev1.RecipientOutcome{Address: rc.Address}
		out.Outcomes = append(out.Outcomes, o)
		local, domain, err := normalizeAddress(rc.Address)
		if err != nil {
			setOutcome(o, storagev1.RecipientResult_STATUS_UNKNOWN_USER)
			continue
		}
		// The directory only (maybe cached): deliverOne checks the account
		// and that the address still leads to it.
		l, err := s.routeAddress(ctx, local, domain)
		if err != nil {
			return nil, toStatus(err)
		}
		if len(l.routes) == 0 {
			setOutcome(o, storagev1.RecipientResult_STATUS_UNKNOWN_USER)
			continue
		}
		rt := l.routes[0]
		if _, seen := byAccount[rt.account]; !seen {
			accounts = append(accounts, rt.account)
		}
		byAccount[rt.account] = append(byAccount[rt.account], o)
		via[rt.account] = append(via[rt.account], rt.address)
	}
	if len(accounts) == 0 {
		return out, nil
	}
	up, err := s.storedUpload(ctx, rec)
	if err != nil {
		return nil, toStatus(err)
	}
	now := timestamppb.Now()
	// One transaction per account (local items have few recipients), each
	// checking that the caller still holds the lease.
	for _, account := range accounts {
		group := byAccount[account]
		err := s.withLeasedItem(ctx, req.Id, req.LeaseId, func(tx *etcdtx.Tx, cur *records.QueueRecord) error {
			sp := tx.Savepoint()
			_, _, err := s.deliverOne(tx, account, via[account], false, up, now) // queue records carry no junk flag yet: a quarantined copy queued for a full mailbox lands in INBOX
			switch storagev1.ReasonOf(err) {
			case storagev1.ErrorReason_ERROR_REASON_UNSPECIFIED:
				if errors.Is(err, errDisabled) {
					tx.Rollback(sp)
					setOutcomes(group, storagev1.RecipientResult_STATUS_DISABLED)
					return nil
				}
				if errors.Is(err, errMoved) { // the cache was behind: the next attempt resolves again
					tx.Rollback(sp)
					setOutcomes(group, storagev1.RecipientResult_STATUS_TEMPORARY_FAILURE)
					return nil
				}
				if err != nil {
					return err
				}
			case reasonOverQuota:
				tx.Rollback(sp)
				setOutcomes(group, storagev1.RecipientResult_STATUS_OVER_QUOTA)
				return nil
			case reasonAccountNotFound, reasonMailboxNotFound:
				tx.Rollback(sp)
				setOutcomes(group, storagev1.RecipientResult_STATUS_UNKNOWN_USER)
				return nil
			default:
				return err
			}
			if err := s.retainBody(tx, cur.BodyKey); err != nil {
				return err
			}
			delivered := map[string]bool{}
			for _, o := range group {
				delivered[o.Address] = true
			}
			for _, rc := range cur.Item.Recipients {
				if delivered[rc.Address] && rc.State == storagev1.QueueRecipient_STATE_PENDING {
					rc.State, rc.LastResult = storagev1.QueueRecipient_STATE_DELIVERED, "250 delivered to the local mailbox"
				}
			}
			tx.Put(s.keys.QueueItem(cur.Item.Id), marshal(cur))
			setOutcomes(group, storagev1.RecipientResult_STATUS_DELIVERED)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, o := range out.Outcomes {
		s.log.Info("queued local delivery", "queue_id", req.Id, "recipient", o.Address, "result", o.Result)
	}
	return out, nil
}

// storedUpload describes a queue item's stored body for deliverOne. Records
// written before the queue kept the header and CRLF sizes get them measured
// from the body (read here, in the storage tier; nothing is written).
func (s *Server) storedUpload(ctx context.Context, rec *records.QueueRecord) (*upload, error) {
	up := &upload{key: rec.BodyKey, size: rec.Item.Size, headerSize: rec.HeaderSize, crlfSize: rec.CrlfSize}
	if up.crlfSize != 0 {
		return up, nil
	}
	rc, err := s.blobs.Get(ctx, rec.BodyKey, 0, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var bareLF int64
	prevCR := false
	_, headerSize, err := summarize(readerFunc(func(p []byte) (int, error) {
		n, err := rc.Read(p)
		bareLF += countBareLF(p[:n], prevCR)
		if n > 0 {
			prevCR = p[n-1] == '\r'
		}
		return n, err
	}))
	if err != nil {
		return nil, err
	}
	up.headerSize, up.crlfSize = uint64(headerSize), up.size+uint64(bareLF)
	return up, nil
}

type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// setOutcome maps a local delivery status to a queue outcome, with the reply
// text an MX would have given (the DSN's Status comes from it).
func setOutcome(o *storagev1.RecipientOutcome, status storagev1.RecipientResult_Status) {
	switch status {
	case storagev1.RecipientResult_STATUS_DELIVERED:
		o.Outcome, o.Result = storagev1.RecipientOutcome_OUTCOME_DELIVERED, "250 delivered to the local mailbox"
	case storagev1.RecipientResult_STATUS_OVER_QUOTA:
		o.Outcome, o.Result = storagev1.RecipientOutcome_OUTCOME_DEFERRED, "452 4.2.2 mailbox full"
	case storagev1.RecipientResult_STATUS_TEMPORARY_FAILURE:
		o.Outcome, o.Result = storagev1.RecipientOutcome_OUTCOME_DEFERRED, "451 4.3.0 temporary storage failure"
	case storagev1.RecipientResult_STATUS_DISABLED:
		o.Outcome, o.Result = storagev1.RecipientOutcome_OUTCOME_FAILED, "550 5.2.1 mailbox disabled"
	default:
		o.Outcome, o.Result = storagev1.RecipientOutcome_OUTCOME_FAILED, "550 5.1.1 no such user here"
	}
}

func setOutcomes(group []*storagev1.RecipientOutcome, status storagev1.RecipientResult_Status) {
	for _, o := range group {
		setOutcome(o, status)
	}
}
