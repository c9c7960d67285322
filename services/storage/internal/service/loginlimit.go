package service

import (
	"context"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// Failed logins are counted in etcd per username and per client address, so
// that the limit holds for the whole cluster however many frontend pods a
// guesser spreads over (each frontend also slows failures down locally).
// The records live on a lease: they vanish once they no longer matter.

// loginKeys are the failure records a login attempt counts against.
func (s *Server) loginKeys(username, clientIP string) []string {
	keys := []string{s.keys.LoginFailures("user", strings.ToLower(username))}
	if clientIP != "" {
		keys = append(keys, s.keys.LoginFailures("ip", clientIP))
	}
	return keys
}

// loginLocked reports whether the username or the client address is locked
// out now.
func (s *Server) loginLocked(ctx context.Context, username, clientIP string) (bool, error) {
	if s.cfg.LoginFailures <= 0 {
		return false, nil
	}
	var ops []clientv3.Op
	for _, k := range s.loginKeys(username, clientIP) {
		ops = append(ops, clientv3.OpGet(k))
	}
	resp, err := s.etcd.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return false, err
	}
	now := time.Now()
	for _, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().Kvs {
			rec := &records.LoginFailures{}
			if err := proto.Unmarshal(kv.Value, rec); err != nil {
				return false, err
			}
			if rec.LockedUntil != nil && now.Before(rec.LockedUntil.AsTime()) {
				return true, nil
			}
		}
	}
	return false, nil
}

// loginFailed counts one failed login; the limit-th failure within the
// window locks the username (and the address) out for the lockout time.
func (s *Server) loginFailed(ctx context.Context, username, clientIP string) error {
	if s.cfg.LoginFailures <= 0 {
		return nil
	}
	window, lockout := s.cfg.LoginFailureWindow, s.cfg.LoginLockout
	lease, err := s.etcd.Grant(ctx, int64(max(window, lockout)/time.Second)+1)
	if err != nil {
		return err
	}
	_, err = etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		now := time.Now()
		for _, key := range s.loginKeys(username, clientIP) {
			rec := &records.LoginFailures{}
			if _, err := getRecord(tx, key, rec); err != nil {
				return err
			}
			if rec.First == nil || now.Sub(rec.First.AsTime()) > window {
				rec = &records.LoginFailures{First: timestamppb.New(now), LockedUntil: rec.LockedUntil}
			}
			rec.Failures++
			if rec.Failures >= uint32(s.cfg.LoginFailures) {
				rec.LockedUntil = timestamppb.New(now.Add(lockout))
				rec.Failures, rec.First = 0, timestamppb.New(now) // count afresh after the lockout
			}
			tx.Put(key, marshal(rec), clientv3.WithLease(lease.ID))
		}
		return nil
	})
	return err
}
