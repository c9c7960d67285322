package service

import (
	"context"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Watch follows the account's keys in etcd. Every storage replica watches the
// same etcd, so a watcher on one replica sees changes made through any other.
// Changes arrive grouped by revision, in revision order; a modseq never goes
// down within a mailbox because every change bumps it in its transaction.
func (s *Server) Watch(req *storagev1.WatchRequest, stream storagev1.WatchService_WatchServer) error {
	ctx, stop := context.WithCancel(stream.Context())
	defer stop()
	defer context.AfterFunc(s.draining, stop)()
	if req.AccountId == "" || strings.Contains(req.AccountId, "/") {
		return errInvalid("account id is required")
	}
	head, err := s.etcd.Get(ctx, s.keys.Quota(req.AccountId))
	if err != nil {
		return toStatus(err)
	}
	if len(head.Kvs) == 0 {
		return fail(reasonAccountNotFound, "no such account")
	}
	rev := req.AfterRevision
	if rev <= 0 {
		rev = head.Header.Revision
	}
	root := s.keys.AccountRoot(req.AccountId)
	backoff := 100 * time.Millisecond
	for {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.etcd.Watch(wctx, root, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV())
		for wresp := range wch {
			if wresp.CompactRevision != 0 {
				// History before rev is gone: tell the client to re-list,
				// then go on from the present.
				now, err := s.etcd.Get(ctx, s.keys.Quota(req.AccountId))
				if err != nil {
					cancel()
					return toStatus(err)
				}
				rev = now.Header.Revision
				if err := stream.Send(&storagev1.WatchResponse{Revision: rev, ResyncRequired: true}); err != nil {
					cancel()
					return err
				}
				break
			}
			if wresp.Err() != nil {
				s.log.Warn("watch interrupted; resuming", "account", req.AccountId, "err", wresp.Err())
				break
			}
			backoff = 100 * time.Millisecond
			for _, batch := range groupByRevision(wresp.Events) {
				r := batch[0].Kv.ModRevision
				changes, published := s.changesOf(root, batch)
				if len(published) > 0 {
					// A bulk copy became visible: its messages come first,
					// as added, then the mailbox's new status.
					adds, err := s.publishedAdds(ctx, req.AccountId, published, r)
					if err != nil {
						cancel()
						return toStatus(err)
					}
					changes = append(adds, changes...)
				}
				if err := sendChanges(stream, r, changes); err != nil {
					cancel()
					return err
				}
				rev = r
			}
		}
		cancel()
		if ctx.Err() != nil {
			return s.watchEnded()
		}
		select {
		case <-ctx.Done():
			return s.watchEnded()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// watchEnded is what a Watch returns once its context is over: nothing if
// the client went away, UNAVAILABLE if this replica is shutting down.
func (s *Server) watchEnded() error {
	if s.draining.Err() != nil {
		return status.Error(codes.Unavailable, "storage replica shutting down: resume the watch elsewhere")
	}
	return nil
}

func groupByRevision(events []*clientv3.Event) [][]*clientv3.Event {
	var out [][]*clientv3.Event
	for _, ev := range events {
		if n := len(out); n > 0 && out[n-1][0].Kv.ModRevision == ev.Kv.ModRevision {
			out[n-1] = append(out[n-1], ev)
			continue
		}
		out = append(out, []*clientv3.Event{ev})
	}
	return out
}

// changesOf turns the events of one revision into changes.
// watchPage bounds the changes in one WatchResponse (a bulk COPY published
// at once may add 100 000 messages in one revision).
const watchPage = 5000

// sendChanges sends one revision's changes, split into responses of at most
// watchPage changes; all but the last say partial.
func sendChanges(stream storagev1.WatchService_WatchServer, rev int64, changes []*storagev1.Change) error {
	for len(changes) > 0 {
		n := min(len(changes), watchPage)
		resp := &storagev1.WatchResponse{Revision: rev, Changes: changes[:n], Partial: n < len(changes)}
		if err := stream.Send(resp); err != nil {
			return err
		}
		changes = changes[n:]
	}
	return nil
}

// published is a range of UIDs that a bulk COPY or MOVE made visible.
type published struct {
	mailboxID string
	from, to  uint32 // [from, to)
}

// publishedAdds reads the entries of the published ranges as they were at
// revision rev and returns them as added messages.
func (s *Server) publishedAdds(ctx context.Context, account string, ranges []published, rev int64) ([]*storagev1.Change, error) {
	var out []*storagev1.Change
	for _, p := range ranges {
		from := p.from
		for from > 0 {
			kvs, next, more, err := s.readEntries(ctx, account, p.mailboxID, from, p.to-1, scanPage, rev)
			if err != nil {
				return nil, err
			}
			for _, kv := range kvs {
				msg, err := decodeEntryKV(kv.Key, kv.Value)
				if err != nil {
					return nil, err
				}
				out = append(out, &storagev1.Change{Kind: storagev1.Change_KIND_MESSAGE_ADDED, MailboxId: p.mailboxID,
					Uid: msg.Uid, Modseq: msg.Modseq, Flags: msg.Flags})
			}
			if !more {
				break
			}
			from = next
		}
	}
	return out, nil
}

func inPublished(pubs []published, mailboxID string, uid uint32) bool {
	for _, p := range pubs {
		if p.mailboxID == mailboxID && uid >= p.from && uid < p.to {
			return true
		}
	}
	return false
}

// changesOf turns one revision's events into changes. Entries at or above
// their mailbox's UIDNEXT are a bulk copy's staged entries: invisible until
// published (staging.go), when the mailbox record's UIDNEXT passes them; the
// ranges published at this revision are returned for publishedAdds.
func (s *Server) changesOf(root string, events []*clientv3.Event) ([]*storagev1.Change, []published) {
	var changes []*storagev1.Change
	var pubs []published
	modseqOf := map[string]uint64{}  // mailbox id → highest modseq in this revision
	uidNextOf := map[string]uint32{} // mailbox id → UIDNEXT after this revision
	for _, ev := range events {
		rel := strings.TrimPrefix(string(ev.Kv.Key), root)
		kind, rest, _ := strings.Cut(rel, "/")
		if kind != "mailboxes" {
			continue
		}
		mb := &storagev1.Mailbox{}
		c := &storagev1.Change{MailboxId: rest, Mailbox: mb}
		switch {
		case ev.Type == clientv3.EventTypeDelete:
			c.Kind = storagev1.Change_KIND_MAILBOX_DELETED
			if ev.PrevKv != nil {
				proto.Unmarshal(ev.PrevKv.Value, mb)
			}
		case ev.IsCreate():
			c.Kind = storagev1.Change_KIND_MAILBOX_CREATED
			proto.Unmarshal(ev.Kv.Value, mb)
		default:
			c.Kind = storagev1.Change_KIND_MAILBOX_UPDATED
			proto.Unmarshal(ev.Kv.Value, mb)
			// A staging published: UIDNEXT passed (some of) its entries.
			// Another change of the same batch may already hold the mailbox
			// again, or have appended right after the published range.
			prev := &storagev1.Mailbox{}
			if ev.PrevKv != nil && proto.Unmarshal(ev.PrevKv.Value, prev) == nil &&
				prev.Staging != nil && mb.UidNext > prev.UidNext {
				if to := min(mb.UidNext, prev.Staging.NextUid); to > prev.UidNext {
					pubs = append(pubs, published{mailboxID: rest, from: prev.UidNext, to: to})
				}
			}
		}
		c.Modseq = mb.HighestModseq
		modseqOf[rest] = mb.HighestModseq
		if ev.Type != clientv3.EventTypeDelete {
			uidNextOf[rest] = mb.UidNext
		}
		mb.Staging, mb.ExpungeLog = nil, nil // internal
		changes = append(changes, c)
	}
	var msgChanges []*storagev1.Change
	for _, ev := range events {
		rel := strings.TrimPrefix(string(ev.Kv.Key), root)
		kind, rest, _ := strings.Cut(rel, "/")
		if kind != "messages" {
			continue
		}
		mailboxID, _, _ := strings.Cut(rest, "/")
		uid := uidFromKey(rel)
		if next, ok := uidNextOf[mailboxID]; ok && uid >= next {
			continue // staged, or a staged entry taken back
		}
		if inPublished(pubs, mailboxID, uid) {
			continue // announced with its published range
		}
		c := &storagev1.Change{MailboxId: mailboxID, Uid: uid}
		if ev.Type == clientv3.EventTypeDelete {
			c.Kind = storagev1.Change_KIND_MESSAGE_EXPUNGED
			c.Modseq = modseqOf[mailboxID]
		} else {
			msg, err := decodeEntry(c.Uid, ev.Kv.Value)
			if err != nil {
				continue // not an entry this server can read; nothing to announce
			}
			c.Kind = storagev1.Change_KIND_FLAGS_CHANGED
			if ev.IsCreate() {
				c.Kind = storagev1.Change_KIND_MESSAGE_ADDED
			}
			c.Modseq, c.Flags = msg.Modseq, msg.Flags
		}
		msgChanges = append(msgChanges, c)
	}
	// Messages before mailbox status, as before: a receiver sees the new
	// counters after the messages they count.
	return append(msgChanges, changes...), pubs
}
