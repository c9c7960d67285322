package service

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// pageBytes bounds the marshaled entries of one ListMessages page. Entries
// with envelopes run to kilobytes (a message with 40 recipients is ~2 KiB),
// so a count limit alone lets a page outgrow gRPC message limits; ~1 MiB
// keeps every page well under the clients' receive limit
// (storeclient.MaxRecvMsgSize), whatever the mailbox holds.
const pageBytes = 1 << 20

// firstScanBatch is how many entries a page reads from etcd before it knows
// how large they are; later reads are sized from the bytes seen so far, so
// that a page whose byte budget runs out early has not read thousands of
// entries it does not return.
const firstScanBatch = 100

// ListMessages lists index entries in UID order, in pages bounded by count
// (entries scanned) and by bytes (entries returned). A caller continues with
// AfterUid = NextAfterUid at the same Revision while More is set.
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
	// Entries at and above UIDNEXT are a bulk copy's staged ones (staging.go):
	// they do not exist for clients until published.
	if mb.UidNext > 0 && (last == 0 || last >= mb.UidNext) {
		last = mb.UidNext - 1
	}
	if last == 0 && mb.UidNext != 1 {
		last = ^uint32(0) // no UIDNEXT recorded: no bound
	}
	mb.Staging, mb.ExpungeLog = nil, nil // internal to the storage tier
	out := &storagev1.ListMessagesResponse{Mailbox: mb, Revision: rev}
	if last != 0 && first > last || mb.UidNext == 1 {
		return out, nil
	}
	// Read in batches at one revision until the count or the byte budget
	// is met. NextAfterUid is the last entry handled (returned or filtered
	// out), so the next page starts right after it.
	var filter *uidFilter
	if len(req.Uids.GetRanges()) > 0 {
		filter = newUIDFilter(req.Uids)
	}
	spans := uidSpans(req.Uids, spanGap)
	from := first
	batch := min(int64(firstScanBatch), limit)
	var scanned, readBytes int64
	size := 0
	for {
		kvs, next, more, err := s.readEntriesIn(ctx, req.AccountId, req.MailboxId, spans, from, last, int(batch), rev)
		if err != nil {
			return nil, toStatus(err)
		}
		msgs := make([]*storagev1.Message, len(kvs))
		var matched []*storagev1.Message
		for i, kv := range kvs {
			msg, err := decodeEntryKV(kv.Key, kv.Value)
			if err != nil {
				return nil, toStatus(err)
			}
			msgs[i] = msg
			if (filter == nil || filter.contains(msg.Uid)) && msg.Modseq > req.ChangedSince {
				if !req.IncludeEnvelope {
					msg.Envelope = nil // a version 1 entry's
				}
				matched = append(matched, msg)
			}
		}
		if err := s.fillSummaries(ctx, matched, req.IncludeEnvelope, req.IncludeStructure); err != nil {
			return nil, toStatus(err)
		}
		for i, msg := range msgs {
			if len(matched) > 0 && matched[0] == msg {
				matched = matched[1:]
				n := proto.Size(msg)
				if len(out.Messages) > 0 && size+n > pageBytes {
					// Full: this entry opens the next page.
					out.More = true
					return out, nil
				}
				out.Messages = append(out.Messages, msg)
				size += n
			}
			out.NextAfterUid = msg.Uid
			scanned++
			readBytes += int64(proto.Size(msg))
			if scanned == limit {
				out.More = i < len(kvs)-1 || more
				if !out.More {
					out.NextAfterUid = 0
				}
				return out, nil
			}
		}
		if !more {
			out.NextAfterUid = 0
			return out, nil
		}
		from = next
		// As many entries as the rest of the budget holds, judged by the
		// size of those read so far (at least one, so the page moves on).
		perEntry := max(readBytes/max(scanned, 1), 1)
		batch = min(max(int64(pageBytes-size)/perEntry, 1), limit-scanned)
	}
}

// uidFilter matches ascending UIDs against a set in one pass over its
// ranges, sorted: a scattered set of many ranges costs a sort, not a search
// per entry.
type uidFilter struct {
	spans []uidSpan
	i     int
}

func newUIDFilter(set *storagev1.UIDSet) *uidFilter {
	return &uidFilter{spans: uidSpans(set, 1)}
}

// contains reports whether uid is in the set; uids must come in ascending order.
func (f *uidFilter) contains(uid uint32) bool {
	for f.i < len(f.spans) && f.spans[f.i].last < uid {
		f.i++
	}
	return f.i < len(f.spans) && f.spans[f.i].first <= uid
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
	return decodeEntry(uid, resp.Kvs[0].Value)
}

func (s *Server) GetMessageBody(req *storagev1.GetMessageBodyRequest, stream storagev1.MessageService_GetMessageBodyServer) error {
	ctx := stream.Context()
	msg, err := s.getMessage(ctx, req.AccountId, req.MailboxId, req.Uid)
	if err != nil {
		return toStatus(err)
	}
	msg.Envelope = nil // a version 1 entry's
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
