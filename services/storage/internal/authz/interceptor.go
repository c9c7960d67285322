package authz

import (
	"context"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Directory is what the rules need to know about accounts.
type Directory interface {
	// AccountAddresses returns an account's primary address and aliases.
	AccountAddresses(ctx context.Context, account string) ([]string, error)
}

// Authorizer enforces the rules on every call.
type Authorizer struct {
	dir      Directory
	sessions *Sessions
	// insecure: plaintext gRPC, every caller is trusted as admin
	// (--insecure-plaintext-grpc).
	insecure bool
	log      *slog.Logger
}

// New returns the authorizer. insecure makes every caller without a TLS
// identity an admin: for --insecure-plaintext-grpc only.
func New(dir Directory, sessions *Sessions, insecure bool, log *slog.Logger) *Authorizer {
	return &Authorizer{dir: dir, sessions: sessions, insecure: insecure, log: log}
}

// caller establishes who is calling: the connection's verified role, and
// the session token the call carries, if any.
func (a *Authorizer) caller(ctx context.Context) (Caller, error) {
	var c Caller
	p, _ := peer.FromContext(ctx)
	switch info := p.AuthInfo.(type) {
	case PeerInfo:
		if info.Err != nil {
			return c, status.Error(codes.Unauthenticated, info.Err.Error())
		}
		c.Role = info.Role
	case nil:
		if !a.insecure {
			return c, status.Error(codes.Unauthenticated, errNoCertificate.Error())
		}
		c.Role = Admin
	default:
		return c, status.Error(codes.Unauthenticated, errNoCertificate.Error())
	}
	md, _ := metadata.FromIncomingContext(ctx)
	// Admins act for anyone and carry no session.
	if tokens := md.Get(SessionMetadata); len(tokens) > 0 && c.Role != Admin {
		s, err := a.sessions.Check(tokens[0])
		if err != nil {
			return c, status.Error(codes.Unauthenticated, err.Error())
		}
		c.Session, c.Account = s, s.Account
	}
	return c, nil
}

// authorize finds the caller and the method's check for its role.
func (a *Authorizer) authorize(ctx context.Context, method string) (Caller, check, error) {
	c, err := a.caller(ctx)
	if err != nil {
		return c, nil, err
	}
	chk, ok := rules[method][c.Role]
	if !ok {
		a.log.Warn("storage call refused: role may not call this method", "method", method, "role", c.Role)
		return c, nil, status.Error(codes.PermissionDenied, fmt.Sprintf("the %s tier may not call %s", c.Role, method))
	}
	return c, chk, nil
}

func (a *Authorizer) denied(method string, c Caller, err error) error {
	if _, ok := status.FromError(err); ok {
		return err // a fault while checking (etcd unreachable), not a refusal
	}
	a.log.Warn("storage call refused", "method", method, "role", c.Role, "account", c.Account, "reason", err.Error())
	return status.Error(codes.PermissionDenied, err.Error())
}

// Unary is the unary server interceptor.
func (a *Authorizer) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	c, chk, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	ctx = WithCaller(ctx, c)
	if err := chk(ctx, a, c, req); err != nil {
		return nil, a.denied(info.FullMethod, c, err)
	}
	return handler(ctx, req)
}

// Stream is the stream server interceptor: every message the client sends
// is checked as it is received (a stream's first message names the
// account; body chunks after it name none).
func (a *Authorizer) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	c, chk, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	ctx := WithCaller(ss.Context(), c)
	if c.Session != nil {
		// A stream outlives no session: a Watch ends when its token
		// expires (the client reconnects with the renewed one), so a
		// disabled account stops seeing its changes within a token's life.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, c.Session.Expires)
		defer cancel()
	}
	return handler(srv, &checkedStream{ServerStream: ss, ctx: ctx, a: a, c: c, chk: chk, method: info.FullMethod})
}

type checkedStream struct {
	grpc.ServerStream
	ctx    context.Context
	a      *Authorizer
	c      Caller
	chk    check
	method string
}

func (s *checkedStream) Context() context.Context { return s.ctx }

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := s.chk(s.ctx, s.a, s.c, m); err != nil {
		return s.a.denied(s.method, s.c, err)
	}
	return nil
}
