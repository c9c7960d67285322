package service

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailfleet/mailfleet/pkg/authlimit"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// Failed logins are counted in etcd, so that the limit holds for the whole
// cluster however many frontend pods a guesser spreads over (each frontend
// also slows failures down locally). As Dovecot's auth penalty, they count
// per client address, and per account and address: 30 wrong passwords
// from one address lock that address out, and that account from that
// address, never the account's owner everywhere else. The account is the
// one the username resolves to, so every spelling of it (case, spaces, a
// trailing dot, an alias) counts as one; a username that names no account
// counts against its address alone. So the records number at most one per
// guessing address and one per account and address, each on a lease that
// ends it once it no longer matters.

// loginKeys are the failure records a login attempt counts against:
// account is "" when the username names no account.
func (s *Server) loginKeys(account, clientIP string) []string {
	ip := authlimit.ClientKey(clientIP) // an IPv6 client by its /64
	keys := []string{s.keys.LoginFailures("ip", ip)}
	if account != "" {
		keys = append(keys, s.keys.LoginFailures("user", account+"/"+ip))
	}
	return keys
}

// loginLocked reports whether the client address, or the account from this
// address, is locked out now.
func (s *Server) loginLocked(ctx context.Context, account, clientIP string) (bool, error) {
	if s.cfg.LoginFailures <= 0 {
		return false, nil
	}
	var ops []clientv3.Op
	for _, k := range s.loginKeys(account, clientIP) {
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
// window locks the address (and the account from that address) out for the
// lockout time.
func (s *Server) loginFailed(ctx context.Context, account, clientIP string) error {
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
		for _, key := range s.loginKeys(account, clientIP) {
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
