package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// The queue: an item record, a due-index key (queue/due/<time>/<id>), and,
// while a runner works on it, a lease key attached to an etcd lease. The due
// key says when the item is next to be looked at: its next attempt while it
// waits, the end of its lease while it is leased (Lease moves it). A runner
// that dies stops renewing its lease; etcd deletes the lease key, and the item
// is handed out again when its due time comes. Completing an item deletes all
// three keys in one transaction, so a completed item is never handed out
// again.

const defaultLeaseTTL = 5 * time.Minute

// newQueueRecord validates enqueue metadata into a new record.
func (s *Server) newQueueRecord(meta *storagev1.EnqueueRequest_Metadata) (*records.QueueRecord, error) {
	if len(meta.Recipients) == 0 {
		return nil, errInvalid("no recipients")
	}
	if meta.MailFrom != "" {
		if _, _, err := normalizeAddress(meta.MailFrom); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	item := &storagev1.QueueItem{
		Id:            newBodyKeyID(now),
		AccountId:     meta.AccountId,
		MailFrom:      meta.MailFrom,
		CreatedAt:     timestamppb.New(now),
		NextAttemptAt: timestamppb.New(now),
		ExpiresAt:     timestamppb.New(timeOr(meta.ExpiresAt, now.Add(s.cfg.QueueLifetime))),
	}
	for _, r := range meta.Recipients {
		local, domain, err := normalizeAddress(r)
		if err != nil {
			return nil, err
		}
		item.Recipients = append(item.Recipients, &storagev1.QueueRecipient{Address: local + "@" + domain, State: storagev1.QueueRecipient_STATE_PENDING})
	}
	return &records.QueueRecord{Item: item}, nil
}

// newBodyKeyID is a time-ordered unique id (queue items list oldest first).
func newBodyKeyID(now time.Time) string {
	b := make([]byte, 6)
	rand.Read(b)
	return fmt.Sprintf("%x%s", now.UnixNano(), hex.EncodeToString(b))
}

func (s *Server) dueKey(item *storagev1.QueueItem) string {
	return s.keys.QueueDue(item.NextAttemptAt.AsTime().UnixMilli(), item.Id)
}

// stageQueueRecord stages a new item and its due-index key.
func (s *Server) stageQueueRecord(tx *etcdtx.Tx, rec *records.QueueRecord) {
	tx.Put(s.keys.QueueItem(rec.Item.Id), marshal(rec))
	tx.Put(s.dueKey(rec.Item), nil)
}

func (s *Server) Enqueue(stream storagev1.QueueService_EnqueueServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return toStatus(err)
	}
	meta := first.GetMetadata()
	if meta == nil {
		return errInvalid("the first request must carry the metadata")
	}
	if meta.SizeHint > uint64(s.cfg.MaxMessageSize) {
		return fail(reasonTooLarge, "message larger than %d bytes", s.cfg.MaxMessageSize)
	}
	rec, err := s.newQueueRecord(meta)
	if err != nil {
		return err
	}
	up, err := s.receiveBody(ctx, chunkReader(func() (*storagev1.BodyChunk, bool, error) {
		req, err := stream.Recv()
		return req.GetChunk(), req.GetMetadata() != nil, err
	}))
	if err != nil {
		return err
	}
	rec.BodyKey, rec.Item.Size, rec.HeaderSize, rec.CrlfSize = up.key, up.size, up.headerSize, up.crlfSize
	_, err = etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		if err := s.newBodyRef(tx, up, 1); err != nil {
			return err
		}
		s.finishUpload(tx, up)
		s.stageQueueRecord(tx, rec)
		return nil
	})
	if err != nil {
		if !etcdtx.IsUncertain(err) {
			s.discardBody(up.key)
		}
		return toStatus(err)
	}
	s.log.Info("queued", "queue_id", rec.Item.Id, "recipients", len(rec.Item.Recipients), "size", up.size)
	return stream.SendAndClose(&storagev1.EnqueueResponse{Item: rec.Item})
}

// leaseScanLimit bounds the due keys one Lease call looks at.
const leaseScanLimit = 1000

// Lease hands out due items. Leasing an item moves its due key to the time
// its lease would expire: the scan of the due range never walks over items
// other runners are working on, however many, and an item whose runner
// died (its lease key gone with the etcd lease) is due again then. A due
// key found with its lease still held (renewed past that time, or a DSN
// owed) moves on to the end of the holder's lease, so each such item costs
// a scan step once per lease period.
func (s *Server) Lease(ctx context.Context, req *storagev1.LeaseRequest) (*storagev1.LeaseResponse, error) {
	maxItems := int(req.MaxItems)
	if maxItems <= 0 || maxItems > 100 {
		maxItems = 10
	}
	ttl := time.Duration(req.TtlSeconds) * time.Second
	if ttl <= 0 {
		ttl = defaultLeaseTTL
	}
	now := time.Now()
	end := s.keys.QueueDue(now.UnixMilli()+1, "")
	start := s.keys.QueueDueAll()
	out := &storagev1.LeaseResponse{}
	var lease *clientv3.LeaseGrantResponse
	abort := func(err error) (*storagev1.LeaseResponse, error) {
		if lease != nil {
			s.etcd.Revoke(context.WithoutCancel(ctx), lease.ID)
		}
		return nil, toStatus(err)
	}
	for scanned := 0; len(out.Items) < maxItems && scanned < leaseScanLimit; {
		due, err := s.etcd.Get(ctx, start, clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(int64(2*maxItems)))
		if err != nil {
			return abort(err)
		}
		for _, kv := range due.Kvs {
			if len(out.Items) == maxItems {
				break
			}
			scanned++
			if lease == nil {
				if lease, err = s.etcd.Grant(ctx, int64(ttl/time.Second)); err != nil {
					return abort(err)
				}
			}
			item, err := s.leaseOne(ctx, string(kv.Key), lease.ID, now.Add(ttl))
			if err != nil {
				return abort(err)
			}
			if item != nil {
				out.Items = append(out.Items, item)
			}
		}
		if !due.More || len(due.Kvs) == 0 {
			break
		}
		start = string(due.Kvs[len(due.Kvs)-1].Key) + "\x00"
	}
	if len(out.Items) == 0 {
		if lease != nil {
			s.etcd.Revoke(ctx, lease.ID)
		}
		return &storagev1.LeaseResponse{}, nil
	}
	out.LeaseId = int64(lease.ID)
	return out, nil
}

// leaseOne leases the item of a due key unless another runner holds it,
// and moves its due key to until (leased by us) or to the end of the
// holder's lease. It returns the item leased, or nil.
func (s *Server) leaseOne(ctx context.Context, dueKey string, lease clientv3.LeaseID, until time.Time) (*storagev1.QueueItem, error) {
	id := dueKey[strings.LastIndexByte(dueKey, '/')+1:]
	var item *storagev1.QueueItem
	_, err := etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		item = nil
		if _, stillDue, err := tx.Get(dueKey); err != nil || !stillDue {
			return err // another runner took it meanwhile
		}
		rec := &records.QueueRecord{}
		if ok, err := getRecord(tx, s.keys.QueueItem(id), rec); err != nil {
			return err
		} else if !ok {
			tx.Delete(dueKey) // dangling: nothing to deliver
			return nil
		}
		holder, held, err := tx.Get(s.keys.QueueLease(id))
		if err != nil {
			return err
		}
		next := until
		if held {
			// Look again when the holder's lease would run out.
			next = time.Now().Add(time.Second)
			if h, err := strconv.ParseInt(string(holder), 10, 64); err == nil {
				if ttl, err := s.etcd.TimeToLive(ctx, clientv3.LeaseID(h)); err == nil && ttl.TTL > 0 {
					next = next.Add(time.Duration(ttl.TTL) * time.Second)
				}
			}
		}
		tx.Delete(dueKey)
		rec.Item.NextAttemptAt = timestamppb.New(next)
		rec.Item.Leased = false
		tx.Put(s.dueKey(rec.Item), nil)
		tx.Put(s.keys.QueueItem(id), marshal(rec))
		if !held {
			tx.Put(s.keys.QueueLease(id), []byte(strconv.FormatInt(int64(lease), 10)), clientv3.WithLease(lease))
			item = rec.Item
		}
		return nil
	})
	if item != nil {
		item.Leased = true
	}
	return item, err
}

func (s *Server) RenewLease(ctx context.Context, req *storagev1.RenewLeaseRequest) (*storagev1.RenewLeaseResponse, error) {
	resp, err := s.etcd.KeepAliveOnce(ctx, clientv3.LeaseID(req.LeaseId))
	if err != nil {
		return nil, fail(reasonLeaseLost, "lease is gone: %v", err)
	}
	return &storagev1.RenewLeaseResponse{TtlSeconds: uint32(resp.TTL)}, nil
}

// withLeasedItem runs fn on an item whose lease the caller must hold.
func (s *Server) withLeasedItem(ctx context.Context, id string, leaseID int64, fn func(tx *etcdtx.Tx, rec *records.QueueRecord) error) error {
	_, err := etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		rec := &records.QueueRecord{}
		ok, err := getRecord(tx, s.keys.QueueItem(id), rec)
		if err != nil {
			return err
		}
		if !ok {
			return fail(reasonQueueNotFound, "no queue item %s", id)
		}
		holder, held, err := tx.Get(s.keys.QueueLease(id))
		if err != nil {
			return err
		}
		if !held || string(holder) != strconv.FormatInt(leaseID, 10) {
			return fail(reasonLeaseLost, "the lease on %s is not held", id)
		}
		return fn(tx, rec)
	})
	return toStatus(err)
}

// removeQueueItem stages the end of an item: record, due key, lease, body ref.
func (s *Server) removeQueueItem(tx *etcdtx.Tx, rec *records.QueueRecord) error {
	tx.Delete(s.keys.QueueItem(rec.Item.Id))
	tx.Delete(s.dueKey(rec.Item))
	tx.Delete(s.keys.QueueLease(rec.Item.Id))
	var freed []string
	if err := s.releaseBody(tx, rec.BodyKey, &freed); err != nil {
		return err
	}
	s.stageFreed(tx, freed)
	return nil
}

// counts tallies recipients by state.
func counts(item *storagev1.QueueItem) (pending, failed int) {
	for _, r := range item.Recipients {
		switch r.State {
		case storagev1.QueueRecipient_STATE_PENDING:
			pending++
		case storagev1.QueueRecipient_STATE_FAILED:
			failed++
		}
	}
	return pending, failed
}

// settle stages what follows from the item's recipient states: removal when
// nothing is left; otherwise a due key (now if a DSN is owed, else at the next
// attempt) and, unless a DSN is owed, the release of the lease.
func (s *Server) settle(tx *etcdtx.Tx, rec *records.QueueRecord, oldDue string, next time.Time) (removed bool, err error) {
	pending, failed := counts(rec.Item)
	if pending == 0 && failed == 0 {
		tx.Delete(oldDue)
		return true, s.removeQueueItem(tx, rec)
	}
	tx.Delete(oldDue)
	if failed > 0 {
		// The runner owes a DSN: keep its lease, and make the item due now
		// so that another runner sends it if this one dies.
		rec.Item.NextAttemptAt = timestamppb.New(time.Now())
	} else {
		rec.Item.NextAttemptAt = timestamppb.New(next)
		tx.Delete(s.keys.QueueLease(rec.Item.Id))
		rec.Item.Leased = false
	}
	tx.Put(s.dueKey(rec.Item), nil)
	tx.Put(s.keys.QueueItem(rec.Item.Id), marshal(rec))
	return false, nil
}

func (s *Server) RecordAttempt(ctx context.Context, req *storagev1.RecordAttemptRequest) (*storagev1.RecordAttemptResponse, error) {
	out := &storagev1.RecordAttemptResponse{}
	err := s.withLeasedItem(ctx, req.Id, req.LeaseId, func(tx *etcdtx.Tx, rec *records.QueueRecord) error {
		oldDue := s.dueKey(rec.Item)
		byAddr := map[string]*storagev1.RecipientOutcome{}
		for _, o := range req.Outcomes {
			byAddr[strings.ToLower(o.Address)] = o
		}
		for _, r := range rec.Item.Recipients {
			o, ok := byAddr[r.Address]
			if !ok || r.State != storagev1.QueueRecipient_STATE_PENDING {
				continue
			}
			r.LastResult = o.Result
			switch o.Outcome {
			case storagev1.RecipientOutcome_OUTCOME_DELIVERED:
				r.State = storagev1.QueueRecipient_STATE_DELIVERED
			case storagev1.RecipientOutcome_OUTCOME_FAILED:
				r.State = storagev1.QueueRecipient_STATE_FAILED
			}
		}
		rec.Item.Attempts++
		rec.Item.LastError = req.Error
		rec.Item.DelayNotified = rec.Item.DelayNotified || req.DelayNotified
		next := timeOr(req.NextAttemptAt, time.Now().Add(5*time.Minute))
		removed, err := s.settle(tx, rec, oldDue, next)
		out.Item, out.Removed = rec.Item, removed
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Server) Bounce(ctx context.Context, req *storagev1.BounceRequest) (*storagev1.BounceResponse, error) {
	out := &storagev1.BounceResponse{}
	err := s.withLeasedItem(ctx, req.Id, req.LeaseId, func(tx *etcdtx.Tx, rec *records.QueueRecord) error {
		oldDue := s.dueKey(rec.Item)
		which := map[string]bool{}
		for _, a := range req.Recipients {
			which[strings.ToLower(a)] = true
		}
		for _, r := range rec.Item.Recipients {
			bounce := which[r.Address]
			if len(which) == 0 {
				bounce = r.State == storagev1.QueueRecipient_STATE_FAILED || r.State == storagev1.QueueRecipient_STATE_PENDING
			}
			if bounce && r.State != storagev1.QueueRecipient_STATE_DELIVERED {
				r.State = storagev1.QueueRecipient_STATE_BOUNCED
			}
		}
		removed, err := s.settle(tx, rec, oldDue, timeOr(rec.Item.NextAttemptAt, time.Now()))
		out.Removed = removed
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Server) Release(ctx context.Context, req *storagev1.ReleaseRequest) (*storagev1.ReleaseResponse, error) {
	err := s.withLeasedItem(ctx, req.Id, req.LeaseId, func(tx *etcdtx.Tx, rec *records.QueueRecord) error {
		tx.Delete(s.dueKey(rec.Item))
		rec.Item.NextAttemptAt = timestamppb.New(timeOr(req.NextAttemptAt, time.Now()))
		rec.Item.Leased = false
		tx.Put(s.dueKey(rec.Item), nil)
		tx.Put(s.keys.QueueItem(rec.Item.Id), marshal(rec))
		tx.Delete(s.keys.QueueLease(rec.Item.Id))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &storagev1.ReleaseResponse{}, nil
}

func (s *Server) Complete(ctx context.Context, req *storagev1.CompleteRequest) (*storagev1.CompleteResponse, error) {
	err := s.withLeasedItem(ctx, req.Id, req.LeaseId, func(tx *etcdtx.Tx, rec *records.QueueRecord) error {
		return s.removeQueueItem(tx, rec)
	})
	if err != nil {
		return nil, err
	}
	return &storagev1.CompleteResponse{}, nil
}

func (s *Server) getQueueRecord(ctx context.Context, id string) (*records.QueueRecord, error) {
	if id == "" || strings.Contains(id, "/") {
		return nil, errInvalid("invalid queue id")
	}
	resp, err := s.etcd.Txn(ctx).Then(clientv3.OpGet(s.keys.QueueItem(id)), clientv3.OpGet(s.keys.QueueLease(id), clientv3.WithCountOnly())).Commit()
	if err != nil {
		return nil, toStatus(err)
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil, fail(reasonQueueNotFound, "no queue item %s", id)
	}
	rec := &records.QueueRecord{}
	if err := proto.Unmarshal(kvs[0].Value, rec); err != nil {
		return nil, toStatus(err)
	}
	rec.Item.Leased = resp.Responses[1].GetResponseRange().Count > 0
	return rec, nil
}

func (s *Server) GetQueueBody(req *storagev1.GetQueueBodyRequest, stream storagev1.QueueService_GetQueueBodyServer) error {
	rec, err := s.getQueueRecord(stream.Context(), req.Id)
	if err != nil {
		return err
	}
	return toStatus(s.streamBody(stream.Context(), rec.BodyKey, 0, 0, func(b []byte) error {
		return stream.Send(&storagev1.GetQueueBodyResponse{Chunk: &storagev1.BodyChunk{Data: b}})
	}))
}

// listQueuePage and listQueueMax bound a ListQueue answer (items of a few
// hundred bytes: far below gRPC's 4 MiB per message).
const (
	listQueuePage = 1000
	listQueueMax  = 5000
)

func (s *Server) ListQueue(ctx context.Context, req *storagev1.ListQueueRequest) (*storagev1.ListQueueResponse, error) {
	limit := int64(req.PageSize)
	if limit == 0 {
		limit = listQueuePage
	}
	limit = min(limit, listQueueMax)
	from := s.keys.QueueItems()
	if req.AfterId != "" {
		from = s.keys.QueueItem(req.AfterId) + "\x00"
	}
	end := clientv3.GetPrefixRangeEnd(s.keys.QueueItems())
	// Leases are few (one per item being delivered): all of them, keys only.
	resp, err := s.etcd.Txn(ctx).Then(
		clientv3.OpGet(from, clientv3.WithRange(end), clientv3.WithLimit(limit)),
		clientv3.OpGet(s.keys.QueueLease(""), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return nil, toStatus(err)
	}
	leased := map[string]bool{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		leased[strings.TrimPrefix(string(kv.Key), s.keys.QueueLease(""))] = true
	}
	items := resp.Responses[0].GetResponseRange()
	out := &storagev1.ListQueueResponse{}
	for _, kv := range items.Kvs {
		rec := &records.QueueRecord{}
		if err := proto.Unmarshal(kv.Value, rec); err != nil {
			return nil, toStatus(err)
		}
		rec.Item.Leased = leased[rec.Item.Id]
		out.Items = append(out.Items, rec.Item)
	}
	if items.More && len(items.Kvs) > 0 {
		out.NextAfterId = strings.TrimPrefix(string(items.Kvs[len(items.Kvs)-1].Key), s.keys.QueueItems())
	}
	return out, nil
}

func (s *Server) GetQueueItem(ctx context.Context, req *storagev1.GetQueueItemRequest) (*storagev1.GetQueueItemResponse, error) {
	rec, err := s.getQueueRecord(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	return &storagev1.GetQueueItemResponse{Item: rec.Item}, nil
}

func (s *Server) RetryQueueItem(ctx context.Context, req *storagev1.RetryQueueItemRequest) (*storagev1.RetryQueueItemResponse, error) {
	_, err := etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		rec := &records.QueueRecord{}
		if ok, err := getRecord(tx, s.keys.QueueItem(req.Id), rec); err != nil {
			return err
		} else if !ok {
			return fail(reasonQueueNotFound, "no queue item %s", req.Id)
		}
		tx.Delete(s.dueKey(rec.Item))
		rec.Item.NextAttemptAt = timestamppb.Now()
		tx.Put(s.dueKey(rec.Item), nil)
		tx.Put(s.keys.QueueItem(req.Id), marshal(rec))
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.RetryQueueItemResponse{}, nil
}

func (s *Server) DeleteQueueItem(ctx context.Context, req *storagev1.DeleteQueueItemRequest) (*storagev1.DeleteQueueItemResponse, error) {
	_, err := etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		rec := &records.QueueRecord{}
		if ok, err := getRecord(tx, s.keys.QueueItem(req.Id), rec); err != nil {
			return err
		} else if !ok {
			return fail(reasonQueueNotFound, "no queue item %s", req.Id)
		}
		return s.removeQueueItem(tx, rec)
	})
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("queue item deleted by admin", "queue_id", req.Id)
	return &storagev1.DeleteQueueItemResponse{}, nil
}
