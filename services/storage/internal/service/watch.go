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
				changes := s.changesOf(root, batch)
				r := batch[0].Kv.ModRevision
				rev = r
				if len(changes) == 0 {
					continue
				}
				if err := stream.Send(&storagev1.WatchResponse{Revision: r, Changes: changes}); err != nil {
					cancel()
					return err
				}
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
func (s *Server) changesOf(root string, events []*clientv3.Event) []*storagev1.Change {
	var changes []*storagev1.Change
	modseqOf := map[string]uint64{} // mailbox id → highest modseq in this revision
	for _, ev := range events {
		rel := strings.TrimPrefix(string(ev.Kv.Key), root)
		kind, rest, _ := strings.Cut(rel, "/")
		switch kind {
		case "mailboxes":
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
			}
			c.Modseq = mb.HighestModseq
			modseqOf[rest] = mb.HighestModseq
			changes = append(changes, c)
		case "messages":
			mailboxID, _, _ := strings.Cut(rest, "/")
			c := &storagev1.Change{MailboxId: mailboxID, Uid: uidFromKey(rel)}
			if ev.Type == clientv3.EventTypeDelete {
				c.Kind = storagev1.Change_KIND_MESSAGE_EXPUNGED
			} else {
				msg := &storagev1.Message{}
				proto.Unmarshal(ev.Kv.Value, msg)
				c.Kind = storagev1.Change_KIND_FLAGS_CHANGED
				if ev.IsCreate() {
					c.Kind = storagev1.Change_KIND_MESSAGE_ADDED
				}
				c.Modseq, c.Flags = msg.Modseq, msg.Flags
			}
			changes = append(changes, c)
		}
	}
	for _, c := range changes {
		if c.Kind == storagev1.Change_KIND_MESSAGE_EXPUNGED {
			c.Modseq = modseqOf[c.MailboxId]
		}
	}
	return changes
}
