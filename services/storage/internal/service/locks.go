package service

import (
	"context"
	"regexp"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

var lockName = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// LockAccount creates the lock key only if it is absent, attached to a fresh
// etcd lease: a holder that dies stops renewing, etcd deletes the key when the
// lease expires, and the next session gets the lock.
func (s *Server) LockAccount(ctx context.Context, req *storagev1.LockAccountRequest) (*storagev1.LockAccountResponse, error) {
	if !lockName.MatchString(req.Name) {
		return nil, errInvalid("invalid lock name")
	}
	ttl := time.Duration(req.TtlSeconds) * time.Second
	if ttl <= 0 {
		ttl = time.Minute
	}
	if ttl > time.Hour {
		return nil, errInvalid("lock ttl above one hour")
	}
	if req.AccountId == "" {
		return nil, errInvalid("account id is required")
	}
	quota := s.keys.Quota(req.AccountId)
	lease, err := s.etcd.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		return nil, toStatus(err)
	}
	key := s.keys.Lock(req.AccountId, req.Name)
	resp, err := s.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0), clientv3.Compare(clientv3.CreateRevision(quota), ">", 0)).
		Then(clientv3.OpPut(key, strconv.FormatInt(int64(lease.ID), 10), clientv3.WithLease(lease.ID))).
		Else(clientv3.OpGet(quota, clientv3.WithCountOnly())).
		Commit()
	if err != nil || !resp.Succeeded {
		s.etcd.Revoke(context.WithoutCancel(ctx), lease.ID)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return nil, fail(reasonAccountNotFound, "no such account")
		}
		return nil, fail(reasonInUse, "the %s lock is held by another session", req.Name)
	}
	return &storagev1.LockAccountResponse{LockId: int64(lease.ID), TtlSeconds: uint32(ttl / time.Second)}, nil
}

func (s *Server) RenewAccountLock(ctx context.Context, req *storagev1.RenewAccountLockRequest) (*storagev1.RenewAccountLockResponse, error) {
	if !lockName.MatchString(req.Name) || req.AccountId == "" {
		return nil, errInvalid("invalid lock")
	}
	// Only the lease that holds this account's lock: a caller allowed on one
	// account cannot keep another account's lock alive by its number.
	held, err := s.etcd.Get(ctx, s.keys.Lock(req.AccountId, req.Name))
	if err != nil {
		return nil, toStatus(err)
	}
	if len(held.Kvs) != 1 || held.Kvs[0].Lease != req.LockId {
		return nil, fail(reasonLeaseLost, "lock expired")
	}
	resp, err := s.etcd.KeepAliveOnce(ctx, clientv3.LeaseID(req.LockId))
	if err != nil {
		if ctx.Err() != nil {
			return nil, toStatus(ctx.Err())
		}
		return nil, fail(reasonLeaseLost, "lock expired")
	}
	return &storagev1.RenewAccountLockResponse{TtlSeconds: uint32(resp.TTL)}, nil
}

func (s *Server) UnlockAccount(ctx context.Context, req *storagev1.UnlockAccountRequest) (*storagev1.UnlockAccountResponse, error) {
	if !lockName.MatchString(req.Name) || req.AccountId == "" {
		return nil, errInvalid("invalid lock")
	}
	// Revoking the lease deletes the key, but only if the key is still ours.
	key := s.keys.Lock(req.AccountId, req.Name)
	resp, err := s.etcd.Get(ctx, key)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(resp.Kvs) == 1 && resp.Kvs[0].Lease == req.LockId {
		if _, err := s.etcd.Revoke(ctx, clientv3.LeaseID(req.LockId)); err != nil {
			return nil, toStatus(err)
		}
	}
	return &storagev1.UnlockAccountResponse{}, nil
}
