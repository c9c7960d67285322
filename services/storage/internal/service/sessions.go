package service

import (
	"context"
	"crypto/rand"
	"errors"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/authz"
)

// sessionKeySize is the HMAC-SHA256 key length of session tokens.
const sessionKeySize = 32

// SessionKey returns the key every replica signs session tokens with,
// creating it on first use. It lives in etcd, which only the storage tier
// reaches; the first replica to start writes it, the others read that one.
func (s *Server) SessionKey(ctx context.Context) ([]byte, error) {
	key := s.keys.SessionKey()
	fresh := make([]byte, sessionKeySize)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	resp, err := s.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(fresh))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return nil, err
	}
	if resp.Succeeded {
		return fresh, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) != 1 || len(kvs[0].Value) != sessionKeySize {
		return nil, errors.New("the session key in etcd is damaged (" + key + ")")
	}
	return kvs[0].Value, nil
}

// SetSessions installs the session token issuer (before serving).
func (s *Server) SetSessions(sessions *authz.Sessions) { s.sessions = sessions }

// Sessions returns the session token issuer.
func (s *Server) Sessions() *authz.Sessions { return s.sessions }

// issueSession returns the session fields of a successful login: a token
// bound to the account and to the tier that called.
func (s *Server) issueSession(ctx context.Context, account string) (string, *timestamppb.Timestamp) {
	c, ok := authz.CallerFrom(ctx)
	if !ok || s.sessions == nil || c.Role == authz.Admin {
		return "", nil // admins act for anyone (and plaintext callers are admins)
	}
	token, exp := s.sessions.Issue(c.Role, account, time.Now())
	return token, timestamppb.New(exp)
}

func (s *Server) RefreshSession(ctx context.Context, req *storagev1.RefreshSessionRequest) (*storagev1.RefreshSessionResponse, error) {
	c, _ := authz.CallerFrom(ctx)
	if s.sessions == nil {
		return nil, status.Error(codes.FailedPrecondition, "sessions are not enabled")
	}
	old, err := s.sessions.Check(req.SessionToken)
	if err != nil || old.Role != c.Role {
		return nil, fail(reasonAuthFailed, "%v", authz.ErrBadSession)
	}
	// The account must still be allowed to log in.
	rec, _, err := s.getAccount(ctx, old.Account)
	if err != nil {
		return nil, toStatus(err)
	}
	if rec == nil || rec.Disabled {
		return nil, fail(reasonAuthFailed, "%v", authz.ErrBadSession)
	}
	token, exp, err := s.sessions.Renew(old)
	if err != nil {
		return nil, fail(reasonAuthFailed, "the session is older than its maximum age: log in again")
	}
	return &storagev1.RefreshSessionResponse{SessionToken: token, SessionExpiresAt: timestamppb.New(exp)}, nil
}

// AccountAddresses is authz.Directory: an account's primary address and
// aliases (none if it does not exist).
func (s *Server) AccountAddresses(ctx context.Context, account string) ([]string, error) {
	rec, _, err := s.getAccount(ctx, account)
	if err != nil {
		return nil, toStatus(err)
	}
	if rec == nil {
		return nil, nil
	}
	return append([]string{rec.Address}, rec.Aliases...), nil
}
