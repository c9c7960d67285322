package service

import (
	"context"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// ClaimRecent hands out the IMAP4rev1 \Recent flag (RFC 3501 section
// 2.3.2) as Dovecot does: the first session that sees a message with the
// mailbox selected gets it as recent, no other. The mailbox's cutoff (one
// small key next to the mailbox, not in the mailbox record, so that claims
// never conflict with the mailbox's writers) moves forward only, by a
// compare-and-swap on its revision: of two sessions claiming at once, one
// takes the UIDs, the other retries and finds them gone.
func (s *Server) ClaimRecent(ctx context.Context, req *storagev1.ClaimRecentRequest) (*storagev1.ClaimRecentResponse, error) {
	if req.AccountId == "" || strings.Contains(req.AccountId, "/") || req.MailboxId == "" || strings.Contains(req.MailboxId, "/") {
		return nil, toStatus(errInvalid("account and mailbox ids are required"))
	}
	key, mbKey := s.keys.Recent(req.AccountId, req.MailboxId), s.keys.Mailbox(req.AccountId, req.MailboxId)
	for attempt := 0; attempt < 20; attempt++ {
		resp, err := s.etcd.Txn(ctx).Then(clientv3.OpGet(key), clientv3.OpGet(mbKey)).Commit()
		if err != nil {
			return nil, toStatus(err)
		}
		mbKVs := resp.Responses[1].GetResponseRange().Kvs
		if len(mbKVs) == 0 {
			return nil, toStatus(fail(reasonMailboxNotFound, "no such mailbox"))
		}
		mb := &storagev1.Mailbox{}
		if err := proto.Unmarshal(mbKVs[0].Value, mb); err != nil {
			return nil, toStatus(err)
		}
		cutoff, rev := uint32(1), int64(0)
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			n, err := strconv.ParseUint(string(kvs[0].Value), 10, 32)
			if err != nil {
				return nil, toStatus(err)
			}
			cutoff, rev = max(uint32(n), 1), kvs[0].ModRevision
		}
		// No UID the mailbox has not given out yet can be claimed.
		upTo := min(req.UpToUid, mb.UidNext)
		if req.Peek || upTo <= cutoff {
			return &storagev1.ClaimRecentResponse{FromUid: cutoff, ToUid: cutoff}, nil
		}
		txn, err := s.etcd.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(key), "=", rev),
			clientv3.Compare(clientv3.CreateRevision(mbKey), "=", mbKVs[0].CreateRevision),
		).Then(clientv3.OpPut(key, strconv.FormatUint(uint64(upTo), 10))).Commit()
		if err != nil {
			return nil, toStatus(err)
		}
		if txn.Succeeded {
			return &storagev1.ClaimRecentResponse{FromUid: cutoff, ToUid: upTo}, nil
		}
	}
	return nil, toStatus(fail(reasonTemporary, "the recent cutoff is too contended, try again"))
}
