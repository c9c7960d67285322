package service

import (
	"context"
	"errors"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// sameboxStep is how many messages one step of a MOVE within a mailbox
// takes at first; a step that does not fit in one transaction is halved.
const sameboxStep = 256

// moveWithinInSteps moves the messages of set to new UIDs in their own
// mailbox (IMAP MOVE to the selected mailbox, RFC 6851) when they do not
// fit in one transaction: step by step, each step one transaction that
// copies and expunges its messages together, so a message is never lost
// nor doubled. Unlike a MOVE to another mailbox (staged, all or nothing),
// a failure here leaves the steps before it done: the staging would hold
// the very mailbox the steps read. The new UIDs are all above the old
// UIDNEXT, so no step meets them again.
func (s *Server) moveWithinInSteps(ctx context.Context, account, mailboxID string, set *storagev1.UIDSet) (srcUIDs, destUIDs []uint32, validity uint32, highest uint64, err error) {
	var uids []uint32
	req := &storagev1.ListMessagesRequest{AccountId: account, MailboxId: mailboxID, Uids: set, Limit: 5000}
	for {
		page, err := s.ListMessages(ctx, req)
		if err != nil {
			return nil, nil, 0, 0, err
		}
		for _, m := range page.Messages {
			uids = append(uids, m.Uid)
		}
		if !page.More {
			break
		}
		req.AfterUid, req.Revision = page.NextAfterUid, page.Revision
	}
	step := sameboxStep
	for len(uids) > 0 {
		n := min(step, len(uids))
		chunk := &storagev1.UIDSet{}
		for _, u := range uids[:n] {
			chunk.Ranges = append(chunk.Ranges, &storagev1.UIDRange{First: u, Last: u})
		}
		su, du, v, h, err := s.copyInOneStep(ctx, account, mailboxID, mailboxID, chunk, n, true)
		if errors.Is(err, errNeedsStaging) && n > 1 {
			step = max(n/2, 1)
			continue
		}
		if err != nil {
			return srcUIDs, destUIDs, validity, highest, err
		}
		srcUIDs, destUIDs = append(srcUIDs, su...), append(destUIDs, du...)
		if v != 0 {
			validity = v
		}
		highest = max(highest, h)
		uids = uids[n:]
	}
	return srcUIDs, destUIDs, validity, highest, nil
}
