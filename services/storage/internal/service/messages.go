package service

import (
	"context"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
	"github.com/mailfleet/mailfleet/services/storage/internal/keys"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// chunkSize is how many messages one transaction changes in STORE, COPY,
// MOVE and EXPUNGE: each message costs up to two compares and two writes.
const chunkSize = 50

// newBodyRef stages the reference record of a freshly uploaded body. Its key
// is new and random, so no read (and no compare) is needed.
func (s *Server) newBodyRef(tx *etcdtx.Tx, up *upload, refs uint32) {
	tx.Put(s.keys.Body(up.key), marshal(&records.BodyRef{Refs: refs, Size: up.size, CreatedAt: timestamppb.Now()}))
}

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
		Envelope:     up.envelope,
		BodyKey:      up.key,
		HeaderSize:   up.headerSize,
		CrlfSize:     up.crlfSize,
	}
	var mb *storagev1.Mailbox
	_, err = s.committer.do(ctx, meta.AccountId, func(tx *etcdtx.Tx) error {
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
		s.newBodyRef(tx, up, 1)
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
	if err := checkQuota(q, meta.SizeHint); err != nil {
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
	if len(set.GetRanges()) == 0 {
		return 1, 0
	}
	first = ^uint32(0)
	for _, r := range set.Ranges {
		first = min(first, r.First)
	}
	for _, r := range set.Ranges {
		if r.Last == 0 {
			return first, 0
		}
		last = max(last, r.Last)
	}
	return first, last
}

// uidFromKey parses the UID at the end of a message key.
func uidFromKey(key string) uint32 {
	n, _ := strconv.ParseUint(key[strings.LastIndexByte(key, '/')+1:], 10, 32)
	return uint32(n)
}

// forEachChunk runs step on the mailbox's entries in set (empty = all) that
// match, chunkSize at a time, each chunk in its own transaction, in UID order.
// step may run several times for one chunk (conflicts); committed is called
// once after each chunk's transaction committed.
func (s *Server) forEachChunk(ctx context.Context, account, mailboxID string, set *storagev1.UIDSet,
	match func(*storagev1.Message) bool,
	step func(tx *etcdtx.Tx, mb *storagev1.Mailbox, msgs []*storagev1.Message) error,
	committed func()) error {
	if account == "" || mailboxID == "" {
		return errInvalid("account and mailbox ids are required")
	}
	first, last := uidBounds(set)
	prefix := s.keys.Messages(account, mailboxID)
	end := keys.PrefixEnd(prefix)
	if last > 0 {
		end = s.keys.Message(account, mailboxID, last) + "\x00"
	}
	next := s.keys.Message(account, mailboxID, max(first, 1))
	for {
		var scannedTo string
		var stepped bool
		_, err := s.committer.do(ctx, account, func(tx *etcdtx.Tx) error {
			stepped = false
			mb, err := s.loadMailbox(tx, account, mailboxID)
			if err != nil {
				return err
			}
			var msgs []*storagev1.Message
			from := next
			scannedTo = ""
			for len(msgs) < chunkSize {
				kvs, err := tx.Range(from, end, 500)
				if err != nil {
					return err
				}
				for _, kv := range kvs {
					scannedTo = kv.Key
					msg := &storagev1.Message{}
					if err := proto.Unmarshal(kv.Value, msg); err != nil {
						return err
					}
					if (len(set.GetRanges()) == 0 || inSet(set, msg.Uid)) && match(msg) {
						msgs = append(msgs, msg)
						if len(msgs) == chunkSize {
							break
						}
					}
				}
				if len(kvs) < 500 || len(msgs) == chunkSize {
					if len(kvs) < 500 && len(msgs) < chunkSize {
						scannedTo = end // nothing beyond
					}
					break
				}
				from = scannedTo + "\x00"
			}
			if len(msgs) == 0 {
				return nil
			}
			stepped = true
			return step(tx, mb, msgs)
		})
		if err != nil {
			return err
		}
		if stepped {
			committed()
		}
		if scannedTo == "" || scannedTo >= end {
			return nil
		}
		next = scannedTo + "\x00"
	}
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
	var chunkMsgs []*storagev1.Message
	var chunkFailed []uint32
	var highest uint64
	step := func(tx *etcdtx.Tx, mb *storagev1.Mailbox, msgs []*storagev1.Message) error {
		chunkMsgs, chunkFailed = nil, nil
		// One modseq for the whole step: it is one atomic change.
		modseq := mb.HighestModseq + 1
		changed := false
		for _, msg := range msgs {
			if req.UnchangedSince > 0 && msg.Modseq > req.UnchangedSince {
				chunkFailed = append(chunkFailed, msg.Uid)
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
				tx.Put(s.keys.Message(req.AccountId, mb.Id, msg.Uid), marshal(msg))
				changed = true
			}
			msg.Envelope = nil
			chunkMsgs = append(chunkMsgs, msg)
		}
		if changed {
			mb.HighestModseq = modseq
			s.saveMailbox(tx, req.AccountId, mb)
		}
		highest = mb.HighestModseq
		return nil
	}
	committed := func() {
		out.Messages = append(out.Messages, chunkMsgs...)
		out.FailedUids = append(out.FailedUids, chunkFailed...)
		out.HighestModseq = highest
	}
	err = s.forEachChunk(ctx, req.AccountId, req.MailboxId, req.Uids, func(*storagev1.Message) bool { return true }, step, committed)
	if err != nil {
		return nil, toStatus(err)
	}
	return out, nil
}

// copyStep copies msgs into the destination mailbox within tx; with move set,
// it also removes them from the source (bodies and usage stay as they are).
func (s *Server) copyStep(tx *etcdtx.Tx, account string, src *storagev1.Mailbox, destID string, msgs []*storagev1.Message, move bool) (dest *storagev1.Mailbox, srcUIDs, destUIDs []uint32, err error) {
	if destID == src.Id {
		return nil, nil, nil, errInvalid("source and destination are the same mailbox")
	}
	dest, err = s.loadMailbox(tx, account, destID)
	if err != nil {
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
		}
		if move {
			if err := s.placeMessage(tx, account, dest, cp); err != nil {
				return nil, nil, nil, err
			}
		} else {
			if err := s.addMessage(tx, account, dest, q, cp); err != nil {
				return nil, nil, nil, err
			}
			if err := s.retainBody(tx, m.BodyKey, m.Size); err != nil {
				return nil, nil, nil, err
			}
		}
		srcUIDs = append(srcUIDs, m.Uid)
		destUIDs = append(destUIDs, cp.Uid)
	}
	s.saveMailbox(tx, account, dest)
	if move {
		s.saveMailbox(tx, account, src)
	} else {
		s.saveQuota(tx, account, q)
	}
	return dest, srcUIDs, destUIDs, nil
}

func (s *Server) CopyMessages(ctx context.Context, req *storagev1.CopyMessagesRequest) (*storagev1.CopyMessagesResponse, error) {
	if len(req.Uids.GetRanges()) == 0 {
		return nil, errInvalid("a UID set is required")
	}
	out := &storagev1.CopyMessagesResponse{}
	var srcUIDs, destUIDs []uint32
	var validity uint32
	step := func(tx *etcdtx.Tx, mb *storagev1.Mailbox, msgs []*storagev1.Message) error {
		dest, su, du, err := s.copyStep(tx, req.AccountId, mb, req.DestMailboxId, msgs, false)
		if err != nil {
			return err
		}
		srcUIDs, destUIDs, validity = su, du, dest.UidValidity
		return nil
	}
	committed := func() {
		out.SourceUids = append(out.SourceUids, srcUIDs...)
		out.DestUids = append(out.DestUids, destUIDs...)
		out.DestUidValidity = validity
		srcUIDs, destUIDs = nil, nil
	}
	if err := s.forEachChunk(ctx, req.AccountId, req.MailboxId, req.Uids, func(*storagev1.Message) bool { return true }, step, committed); err != nil {
		return nil, toStatus(err)
	}
	if out.DestUidValidity == 0 {
		// Nothing matched: still tell the caller the destination exists.
		if _, err := s.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: req.AccountId, MailboxId: req.DestMailboxId}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Server) MoveMessages(ctx context.Context, req *storagev1.MoveMessagesRequest) (*storagev1.MoveMessagesResponse, error) {
	if len(req.Uids.GetRanges()) == 0 {
		return nil, errInvalid("a UID set is required")
	}
	out := &storagev1.MoveMessagesResponse{}
	var srcUIDs, destUIDs []uint32
	var validity uint32
	var highest uint64
	step := func(tx *etcdtx.Tx, mb *storagev1.Mailbox, msgs []*storagev1.Message) error {
		dest, su, du, err := s.copyStep(tx, req.AccountId, mb, req.DestMailboxId, msgs, true)
		if err != nil {
			return err
		}
		srcUIDs, destUIDs, validity, highest = su, du, dest.UidValidity, mb.HighestModseq
		return nil
	}
	committed := func() {
		out.SourceUids = append(out.SourceUids, srcUIDs...)
		out.DestUids = append(out.DestUids, destUIDs...)
		out.DestUidValidity, out.HighestModseq = validity, highest
		srcUIDs, destUIDs = nil, nil
	}
	if err := s.forEachChunk(ctx, req.AccountId, req.MailboxId, req.Uids, func(*storagev1.Message) bool { return true }, step, committed); err != nil {
		return nil, toStatus(err)
	}
	return out, nil
}

func (s *Server) ExpungeMessages(ctx context.Context, req *storagev1.ExpungeMessagesRequest) (*storagev1.ExpungeMessagesResponse, error) {
	if req.IgnoreDeletedFlag && len(req.Uids.GetRanges()) == 0 {
		return nil, errInvalid("expunging without the \\Deleted flag needs a UID set")
	}
	out, err := s.expunge(ctx, req.AccountId, req.MailboxId, req.Uids, req.IgnoreDeletedFlag)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// expunge removes the messages in set (empty = all) that carry \Deleted, or
// all of them in set when ignoreDeleted is set.
func (s *Server) expunge(ctx context.Context, account, mailboxID string, set *storagev1.UIDSet, ignoreDeleted bool) (*storagev1.ExpungeMessagesResponse, error) {
	out := &storagev1.ExpungeMessagesResponse{}
	var chunkUIDs []uint32
	var highest uint64
	match := func(m *storagev1.Message) bool { return ignoreDeleted || hasFlag(m.Flags, `\Deleted`) }
	step := func(tx *etcdtx.Tx, mb *storagev1.Mailbox, msgs []*storagev1.Message) error {
		chunkUIDs = nil
		q, err := s.loadQuota(tx, account)
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
		for _, m := range msgs {
			if err := s.removeMessage(tx, account, mb, q, m); err != nil {
				return err
			}
			chunkUIDs = append(chunkUIDs, m.Uid)
		}
		s.saveMailbox(tx, account, mb)
		s.saveQuota(tx, account, q)
		highest = mb.HighestModseq
		return nil
	}
	committed := func() {
		out.ExpungedUids = append(out.ExpungedUids, chunkUIDs...)
		out.HighestModseq = highest
		chunkUIDs = nil
	}
	if err := s.forEachChunk(ctx, account, mailboxID, set, match, step, committed); err != nil {
		return nil, toStatus(err)
	}
	return out, nil
}
