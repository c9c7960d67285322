package service

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/keys"
)

func (s *Server) ListMessages(ctx context.Context, req *storagev1.ListMessagesRequest) (*storagev1.ListMessagesResponse, error) {
	if req.AccountId == "" || req.MailboxId == "" {
		return nil, errInvalid("account and mailbox ids are required")
	}
	limit := int64(req.Limit)
	if limit == 0 {
		limit = 1000
	}
	limit = min(limit, 5000)
	first, last := uint32(1), uint32(0)
	if len(req.Uids.GetRanges()) > 0 {
		first, last = uidBounds(req.Uids)
	}
	first = max(first, req.AfterUid+1)
	prefix := s.keys.Messages(req.AccountId, req.MailboxId)
	end := keys.PrefixEnd(prefix)
	if last > 0 {
		end = s.keys.Message(req.AccountId, req.MailboxId, last) + "\x00"
	}
	opts := []clientv3.OpOption{}
	if req.Revision > 0 {
		opts = append(opts, clientv3.WithRev(req.Revision))
	}
	mbResp, err := s.etcd.Get(ctx, s.keys.Mailbox(req.AccountId, req.MailboxId), opts...)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(mbResp.Kvs) == 0 {
		return nil, fail(reasonMailboxNotFound, "no such mailbox")
	}
	rev := mbResp.Header.Revision
	if req.Revision > 0 {
		rev = req.Revision
	}
	mb := &storagev1.Mailbox{}
	if err := proto.Unmarshal(mbResp.Kvs[0].Value, mb); err != nil {
		return nil, toStatus(err)
	}
	out := &storagev1.ListMessagesResponse{Mailbox: mb, Revision: rev}
	if first > last && last != 0 {
		return out, nil
	}
	resp, err := s.etcd.Get(ctx, s.keys.Message(req.AccountId, req.MailboxId, first),
		clientv3.WithRange(end), clientv3.WithLimit(limit), clientv3.WithRev(rev))
	if err != nil {
		return nil, toStatus(err)
	}
	for _, kv := range resp.Kvs {
		msg := &storagev1.Message{}
		if err := proto.Unmarshal(kv.Value, msg); err != nil {
			return nil, toStatus(err)
		}
		out.NextAfterUid = msg.Uid
		if len(req.Uids.GetRanges()) > 0 && !inSet(req.Uids, msg.Uid) {
			continue
		}
		if msg.Modseq <= req.ChangedSince {
			continue
		}
		if !req.IncludeEnvelope {
			msg.Envelope = nil
		}
		out.Messages = append(out.Messages, msg)
	}
	out.More = resp.More
	if !out.More {
		out.NextAfterUid = 0
	}
	return out, nil
}

// getMessage reads one index entry.
func (s *Server) getMessage(ctx context.Context, account, mailboxID string, uid uint32) (*storagev1.Message, error) {
	if account == "" || mailboxID == "" || uid == 0 {
		return nil, errInvalid("account, mailbox and uid are required")
	}
	resp, err := s.etcd.Get(ctx, s.keys.Message(account, mailboxID, uid))
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, fail(reasonMessageNotFound, "no message with UID %d", uid)
	}
	msg := &storagev1.Message{}
	return msg, proto.Unmarshal(resp.Kvs[0].Value, msg)
}

func (s *Server) GetMessageBody(req *storagev1.GetMessageBodyRequest, stream storagev1.MessageService_GetMessageBodyServer) error {
	ctx := stream.Context()
	msg, err := s.getMessage(ctx, req.AccountId, req.MailboxId, req.Uid)
	if err != nil {
		return toStatus(err)
	}
	msg.Envelope = nil
	if err := stream.Send(&storagev1.GetMessageBodyResponse{Message: msg}); err != nil {
		return err
	}
	if req.Offset >= msg.Size {
		return nil
	}
	err = s.streamBody(ctx, msg.BodyKey, req.Offset, req.Length, func(b []byte) error {
		return stream.Send(&storagev1.GetMessageBodyResponse{Chunk: &storagev1.BodyChunk{Data: b}})
	})
	if err != nil {
		s.log.Error("body read failed", "account", req.AccountId, "body", msg.BodyKey, "err", err)
	}
	return toStatus(err)
}

