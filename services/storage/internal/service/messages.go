package service

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
)

func (s *Server) AppendMessage(stream storagev1.MessageService_AppendMessageServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return toStatus(err)
	}
	meta := first.GetMetadata()
	if meta == nil {
		return errInvalid("the first request must carry the metadata")
	}
	flags, err := normalizeFlags(meta.Flags)
	if err != nil {
		return err
	}
	if meta.SizeHint > uint64(s.cfg.MaxMessageSize) {
		return fail(reasonTooLarge, "message larger than %d bytes", s.cfg.MaxMessageSize)
	}
	// Check the target before reading the body, so that a wrong mailbox or a
	// full quota costs no upload: one round trip, no transaction.
	mailboxID, err := s.appendPrecheck(ctx, meta)
	if err != nil {
		return toStatus(err)
	}

	up, err := s.receiveBody(ctx, chunkReader(func() (*storagev1.BodyChunk, bool, error) {
		req, err := stream.Recv()
		return req.GetChunk(), req.GetMetadata() != nil, err
	}))
	if err != nil {
		return err
	}
	msg := &storagev1.Message{
		Flags:        flags,
		Size:         up.size,
		InternalDate: timestamppb.New(timeOr(meta.InternalDate, time.Now())),
		BodyKey:      up.key,
		HeaderSize:   up.headerSize,
		CrlfSize:     up.crlfSize,
	}
	var mb *storagev1.Mailbox
	_, err = s.commitWaiting(ctx, meta.AccountId, func(tx *etcdtx.Tx) error {
		// Both keys in one round trip (cached for the rest of the batch).
		if err := tx.Prefetch([]string{s.keys.Quota(meta.AccountId), s.keys.Mailbox(meta.AccountId, mailboxID)}); err != nil {
			return err
		}
		q, err := s.loadQuota(tx, meta.AccountId)
		if err != nil {
			return err
		}
		if mb, err = s.loadMailbox(tx, meta.AccountId, mailboxID); err != nil {
			return err
		}
		if err := s.addMessage(tx, meta.AccountId, mb, q, msg); err != nil {
			return err
		}
		if err := s.newBodyRef(tx, up, 1); err != nil {
			return err
		}
		s.finishUpload(tx, up)
		s.saveMailbox(tx, meta.AccountId, mb)
		s.saveQuota(tx, meta.AccountId, q)
		return nil
	})
	if err != nil {
		if !etcdtx.IsUncertain(err) {
			s.discardBody(up.key)
		}
		return toStatus(err)
	}
	return stream.SendAndClose(&storagev1.AppendMessageResponse{
		MailboxId: mailboxID, UidValidity: mb.UidValidity, Uid: msg.Uid, Modseq: msg.Modseq, Size: msg.Size,
	})
}

// appendPrecheck resolves the target mailbox and checks the announced size
// against the quota, reading everything in one etcd round trip.
func (s *Server) appendPrecheck(ctx context.Context, meta *storagev1.AppendMessageRequest_Metadata) (string, error) {
	if meta.AccountId == "" || strings.Contains(meta.AccountId, "/") {
		return "", errInvalid("account id is required")
	}
	target := s.keys.Mailbox(meta.AccountId, meta.MailboxId)
	if meta.MailboxId == "" {
		name, err := normalizeMailboxName(meta.MailboxName)
		if err != nil {
			return "", err
		}
		target = s.keys.Name(meta.AccountId, name)
	} else if strings.Contains(meta.MailboxId, "/") {
		return "", fail(reasonMailboxNotFound, "no such mailbox")
	}
	resp, err := s.etcd.Txn(ctx).Then(clientv3.OpGet(s.keys.Quota(meta.AccountId)), clientv3.OpGet(target)).Commit()
	if err != nil {
		return "", err
	}
	quotaKvs, targetKvs := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
	if len(quotaKvs) == 0 {
		return "", fail(reasonAccountNotFound, "no such account")
	}
	if len(targetKvs) == 0 {
		return "", fail(reasonMailboxNotFound, "no such mailbox")
	}
	q := &storagev1.Quota{}
	if err := proto.Unmarshal(quotaKvs[0].Value, q); err != nil {
		return "", err
	}
	if err := checkQuota(q, meta.SizeHint, 1); err != nil {
		return "", err
	}
	if meta.MailboxId == "" {
		return string(targetKvs[0].Value), nil
	}
	return meta.MailboxId, nil
}

// chunkReader adapts a stream of requests to receiveBody: it yields each
// chunk's data and refuses a second metadata message.
func chunkReader(recv func() (chunk *storagev1.BodyChunk, isMetadata bool, err error)) func() ([]byte, error) {
	return func() ([]byte, error) {
		chunk, isMeta, err := recv()
		if err != nil {
			return nil, err
		}
		if isMeta {
			return nil, errInvalid("metadata sent twice")
		}
		return chunk.GetData(), nil
	}
}

// uidBounds returns the smallest range of UIDs that covers set (last 0 = no
// upper bound). An empty set means every UID.
func uidBounds(set *storagev1.UIDSet) (first, last uint32) {
	spans := uidSpans(set, 1)
	if spans == nil {
		return 1, 0
	}
	first, last = spans[0].first, spans[len(spans)-1].last
	if last == ^uint32(0) {
		last = 0 // "n:*"
	}
	return first, last
}

// uidFromKey parses the UID at the end of a message key.
func uidFromKey(key string) uint32 {
	n, _ := strconv.ParseUint(key[strings.LastIndexByte(key, '/')+1:], 10, 32)
	return uint32(n)
}

func (s *Server) StoreFlags(ctx context.Context, req *storagev1.StoreFlagsRequest) (*storagev1.StoreFlagsResponse, error) {
	flags, err := normalizeFlags(req.Flags)
	if err != nil {
		return nil, err
	}
	if req.Op == storagev1.StoreFlagsRequest_OP_UNSPECIFIED {
		return nil, errInvalid("store operation is required")
	}
	if len(req.Uids.GetRanges()) == 0 {
		return nil, errInvalid("a UID set is required")
	}
	out := &storagev1.StoreFlagsResponse{}
	var stepMsgs []*storagev1.Message
	var stepFailed []uint32
	var highest uint64
	flagBytes := 0
	for _, f := range flags {
		flagBytes += len(f) + 2
	}
	err = s.runBulk(ctx, req.AccountId, req.MailboxId, s.keys.Mailbox(req.AccountId, req.MailboxId), req.Uids, bulkChange{
		cost: func(m *storagev1.Message) (int, int) {
			return 1, s.entryCost(req.AccountId, req.MailboxId, m) + flagBytes
		},
		stage: func(tx *etcdtx.Tx, mb *storagev1.Mailbox, msgs []*storagev1.Message) error {
			stepMsgs, stepFailed = nil, nil
			// One modseq for the whole step: it is one atomic change.
			modseq := mb.HighestModseq + 1
			changed := false
			for _, m := range msgs {
				msg := proto.Clone(m).(*storagev1.Message)
				if req.UnchangedSince > 0 && msg.Modseq > req.UnchangedSince {
					stepFailed = append(stepFailed, msg.Uid)
					continue
				}
				newFlags := applyFlags(msg.Flags, req.Op, flags)
				if !sameFlags(newFlags, msg.Flags) {
					wasSeen, isSeen := hasFlag(msg.Flags, `\Seen`), hasFlag(newFlags, `\Seen`)
					switch {
					case wasSeen && !isSeen:
						mb.Unseen++
					case !wasSeen && isSeen && mb.Unseen > 0:
						mb.Unseen--
					}
					msg.Flags, msg.Modseq = newFlags, modseq
					tx.Put(s.keys.Message(req.AccountId, mb.Id, msg.Uid), encodeEntry(msg))
					changed = true
				}
				// The answer carries what a STORE reports, no more: it
				// names every message of sets of any size.
				stepMsgs = append(stepMsgs, &storagev1.Message{Uid: msg.Uid, Modseq: msg.Modseq, Flags: msg.Flags})
			}
			if changed {
				mb.HighestModseq = modseq
				s.saveMailbox(tx, req.AccountId, mb)
			}
			highest = mb.HighestModseq
			return nil
		},
		committed: func([]*storagev1.Message) {
			out.Messages = append(out.Messages, stepMsgs...)
			out.FailedUids = append(out.FailedUids, stepFailed...)
			out.HighestModseq = highest
		},
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return out, nil
}

// copyCost is what copying (or moving) one message costs a step.
func (s *Server) copyCost(account, destID string, m *storagev1.Message, move bool) (int, int) {
	bytes := s.entryCost(account, destID, m) + 64 // the new entry, with a longer UID
	if move {
		// and the source's delete, and its UID in the expunge record
		return 2, bytes + len(s.keys.Message(account, destID, m.Uid)) + opCost + expungeRecordCost
	}
	return 2, bytes + s.refCost(m.BodyKey)
}

// copyStep copies msgs into the destination mailbox within tx; with move set,
// it also removes them from the source (bodies and usage stay as they are).
func (s *Server) copyStep(tx *etcdtx.Tx, account string, src *storagev1.Mailbox, destID string, msgs []*storagev1.Message, move bool) (dest *storagev1.Mailbox, srcUIDs, destUIDs []uint32, err error) {
	if destID == src.Id {
		// Within one mailbox (IMAP COPY or MOVE to the selected mailbox,
		// RFC 6851 section 3.3): the copies take new UIDs in the record tx
		// read, saved once.
		dest = src
	} else if dest, err = s.loadMailbox(tx, account, destID); err != nil {
		return nil, nil, nil, err
	}
	q, err := s.loadQuota(tx, account)
	if err != nil {
		return nil, nil, nil, err
	}
	if !move {
		var refKeys []string
		for _, m := range msgs {
			refKeys = append(refKeys, s.keys.Body(m.BodyKey))
		}
		if err := tx.Prefetch(refKeys); err != nil {
			return nil, nil, nil, err
		}
	} else {
		src.HighestModseq++
	}
	for _, m := range msgs {
		cp := proto.Clone(m).(*storagev1.Message)
		if move {
			// A move changes neither usage nor body references.
			tx.Delete(s.keys.Message(account, src.Id, m.Uid))
			src.Messages--
			src.Size -= min(src.Size, m.Size)
			if !hasFlag(m.Flags, `\Seen`) && src.Unseen > 0 {
				src.Unseen--
			}
			if err := s.placeMessage(tx, account, dest, cp); err != nil {
				return nil, nil, nil, err
			}
		} else {
			if err := s.addMessage(tx, account, dest, q, cp); err != nil {
				return nil, nil, nil, err
			}
			if err := s.retainBody(tx, m.BodyKey); err != nil {
				return nil, nil, nil, err
			}
		}
		srcUIDs = append(srcUIDs, m.Uid)
		destUIDs = append(destUIDs, cp.Uid)
	}
	s.saveMailbox(tx, account, dest)
	if move {
		s.recordExpunge(tx, account, src, srcUIDs)
		s.saveMailbox(tx, account, src)
	} else {
		s.saveQuota(tx, account, q)
	}
	return dest, srcUIDs, destUIDs, nil
}

// errNeedsStaging means a COPY or MOVE does not fit in one transaction.
var errNeedsStaging = errors.New("the copy needs more than one transaction")

// copyInOneStep runs a COPY or MOVE of set as one transaction, or fails with
// errNeedsStaging (having changed nothing) when its n messages do not fit.
func (s *Server) copyInOneStep(ctx context.Context, account, srcID, destID string, set *storagev1.UIDSet, n int, move bool) (srcUIDs, destUIDs []uint32, validity uint32, highest uint64, err error) {
	// The answer is the committed attempt's: an attempt that conflicted and
	// whose retry found its sources gone (expunged, moved meanwhile) copied
	// nothing, whatever it had staged.
	var stepSrc, stepDest []uint32
	var stepValidity uint32
	var stepHighest uint64
	err = s.runBulk(ctx, account, srcID, s.keys.Mailbox(account, srcID), set, bulkChange{
		readOnly: !move,
		cost:     func(m *storagev1.Message) (int, int) { return s.copyCost(account, destID, m, move) },
		stage: func(tx *etcdtx.Tx, mb *storagev1.Mailbox, msgs []*storagev1.Message) error {
			if len(msgs) < n {
				return errNeedsStaging
			}
			dest, su, du, err := s.copyStep(tx, account, mb, destID, msgs, move)
			if err != nil {
				return err
			}
			stepSrc, stepDest, stepValidity, stepHighest = su, du, dest.UidValidity, mb.HighestModseq
			return nil
		},
		committed: func(msgs []*storagev1.Message) {
			srcUIDs, destUIDs, validity, highest = stepSrc, stepDest, stepValidity, stepHighest
			n -= len(msgs) // anything left (appended meanwhile) must not fit in this step
		},
	})
	if err == nil && len(srcUIDs) == 0 {
		// Nothing left to copy: still answer with the destination's UIDVALIDITY.
		resp, gerr := s.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: account, MailboxId: destID})
		if gerr != nil {
			return nil, nil, 0, 0, gerr
		}
		validity = resp.Mailbox.UidValidity
	}
	return srcUIDs, destUIDs, validity, highest, err
}

// copyOrMove runs a COPY or MOVE of set from one mailbox to another as one
// change: in one transaction when it fits, staged (staging.go) when not.
func (s *Server) copyOrMove(ctx context.Context, account, srcID, destID string, set *storagev1.UIDSet, move bool) (srcUIDs, destUIDs []uint32, validity uint32, highest uint64, err error) {
	if len(set.GetRanges()) == 0 {
		return nil, nil, 0, 0, errInvalid("a UID set is required")
	}
	n, bytes, err := s.measureSet(ctx, account, srcID, set)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	if !move {
		// The whole set must fit in the quota before anything is copied.
		if err := s.quotaRoom(ctx, account, bytes, uint64(n)); err != nil {
			return nil, nil, 0, 0, err
		}
	}
	if n == 0 {
		resp, err := s.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: account, MailboxId: destID})
		if err != nil {
			return nil, nil, 0, 0, err
		}
		return nil, nil, resp.Mailbox.UidValidity, 0, nil
	}
	srcUIDs, destUIDs, validity, highest, err = s.copyInOneStep(ctx, account, srcID, destID, set, n, move)
	if move && err == nil && len(srcUIDs) > 0 {
		s.pruneExpungeLog(ctx, account, srcID)
	}
	if !errors.Is(err, errNeedsStaging) {
		return srcUIDs, destUIDs, validity, highest, err
	}
	if destID == srcID {
		// A staging holds its destination, here also the source its steps
		// read: within one mailbox, a MOVE goes in steps of its own
		// (samebox.go); a COPY, which must be all or nothing, is held to
		// one transaction.
		if move {
			return s.moveWithinInSteps(ctx, account, srcID, set)
		}
		return nil, nil, 0, 0, fail(reasonTooMany, "too many messages to copy within one mailbox at once")
	}
	srcUIDs, destUIDs, validity, err = s.stagedCopy(ctx, account, srcID, destID, set, move)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	if move {
		resp, err := s.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: account, MailboxId: srcID})
		if err == nil {
			highest = resp.Mailbox.HighestModseq
		}
	}
	return srcUIDs, destUIDs, validity, highest, nil
}

func (s *Server) CopyMessages(ctx context.Context, req *storagev1.CopyMessagesRequest) (*storagev1.CopyMessagesResponse, error) {
	src, dest, validity, _, err := s.copyOrMove(ctx, req.AccountId, req.MailboxId, req.DestMailboxId, req.Uids, false)
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.CopyMessagesResponse{SourceUids: src, DestUids: dest, DestUidValidity: validity}, nil
}

func (s *Server) MoveMessages(ctx context.Context, req *storagev1.MoveMessagesRequest) (*storagev1.MoveMessagesResponse, error) {
	src, dest, validity, highest, err := s.copyOrMove(ctx, req.AccountId, req.MailboxId, req.DestMailboxId, req.Uids, true)
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.MoveMessagesResponse{SourceUids: src, DestUids: dest, DestUidValidity: validity, HighestModseq: highest}, nil
}

// measureSet counts the visible messages of set and their bytes, page by page.
func (s *Server) measureSet(ctx context.Context, account, mailboxID string, set *storagev1.UIDSet) (int, uint64, error) {
	var n int
	var bytes uint64
	req := &storagev1.ListMessagesRequest{AccountId: account, MailboxId: mailboxID, Uids: set, Limit: 5000}
	for {
		page, err := s.ListMessages(ctx, req)
		if err != nil {
			return 0, 0, err
		}
		for _, m := range page.Messages {
			bytes += m.Size
			n++
		}
		if !page.More {
			return n, bytes, nil
		}
		req.AfterUid, req.Revision = page.NextAfterUid, page.Revision
	}
}

// quotaRoom fails with OVER_QUOTA unless the account has room for bytes and
// messages more.
func (s *Server) quotaRoom(ctx context.Context, account string, bytes, messages uint64) error {
	q, err := s.readQuota(ctx, account)
	if err != nil {
		return err
	}
	return checkQuota(q, bytes, messages)
}

// readQuota reads the account's quota record outside a transaction.
func (s *Server) readQuota(ctx context.Context, account string) (*storagev1.Quota, error) {
	resp, err := s.etcd.Get(ctx, s.keys.Quota(account))
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, fail(reasonAccountNotFound, "no such account")
	}
	q := &storagev1.Quota{}
	if err := proto.Unmarshal(resp.Kvs[0].Value, q); err != nil {
		return nil, err
	}
	return q, nil
}

func (s *Server) ExpungeMessages(ctx context.Context, req *storagev1.ExpungeMessagesRequest) (*storagev1.ExpungeMessagesResponse, error) {
	if req.IgnoreDeletedFlag && len(req.Uids.GetRanges()) == 0 {
		return nil, errInvalid("expunging without the \\Deleted flag needs a UID set")
	}
	out, err := s.expunge(ctx, req.AccountId, req.MailboxId, req.Uids, req.IgnoreDeletedFlag)
	if err != nil {
		return nil, toStatus(err)
	}
	return out, nil
}

// expunge removes the messages in set (empty = all) that carry \Deleted, or
// all of them in set when ignoreDeleted is set.
func (s *Server) expunge(ctx context.Context, account, mailboxID string, set *storagev1.UIDSet, ignoreDeleted bool) (*storagev1.ExpungeMessagesResponse, error) {
	return s.removeEntries(ctx, account, mailboxID, s.keys.Mailbox(account, mailboxID), set, ignoreDeleted)
}

// removeEntries is expunge for a mailbox record at mailboxKey (a mailbox
// being deleted keeps its record elsewhere).
func (s *Server) removeEntries(ctx context.Context, account, mailboxID, mailboxKey string, set *storagev1.UIDSet, ignoreDeleted bool) (*storagev1.ExpungeMessagesResponse, error) {
	out := &storagev1.ExpungeMessagesResponse{}
	var stepUIDs []uint32
	var highest uint64
	err := s.runBulk(ctx, account, mailboxID, mailboxKey, set, bulkChange{
		match: func(m *storagev1.Message) bool { return ignoreDeleted || hasFlag(m.Flags, `\Deleted`) },
		cost: func(m *storagev1.Message) (int, int) {
			// The UID's share of the step's expunge record included.
			return 2, len(s.keys.Message(account, mailboxID, m.Uid)) + opCost + s.refCost(m.BodyKey) + expungeRecordCost
		},
		stage: func(tx *etcdtx.Tx, mb *storagev1.Mailbox, msgs []*storagev1.Message) error {
			stepUIDs = nil
			// A deleted account's quota is gone first (DeleteAccount), so
			// that no writer adds to it; its removal goes on without one.
			q, err := s.loadQuota(tx, account)
			if storagev1.ReasonOf(err) == reasonAccountNotFound {
				q, err = nil, nil
			}
			if err != nil {
				return err
			}
			var refKeys []string
			for _, m := range msgs {
				refKeys = append(refKeys, s.keys.Body(m.BodyKey))
			}
			if err := tx.Prefetch(refKeys); err != nil {
				return err
			}
			mb.HighestModseq++
			var freed []string
			for _, m := range msgs {
				if err := s.removeMessage(tx, account, mb, q, m, &freed); err != nil {
					return err
				}
				stepUIDs = append(stepUIDs, m.Uid)
			}
			s.stageFreed(tx, freed)
			if mailboxKey == s.keys.Mailbox(account, mailboxID) {
				s.recordExpunge(tx, account, mb, stepUIDs)
			}
			tx.Put(mailboxKey, marshal(mb))
			if q != nil {
				s.saveQuota(tx, account, q)
			}
			highest = mb.HighestModseq
			return nil
		},
		committed: func([]*storagev1.Message) {
			out.ExpungedUids = append(out.ExpungedUids, stepUIDs...)
			out.HighestModseq = highest
		},
	})
	if err == nil && len(out.ExpungedUids) > 0 && mailboxKey == s.keys.Mailbox(account, mailboxID) {
		s.pruneExpungeLog(ctx, account, mailboxID)
	}
	return out, err
}
