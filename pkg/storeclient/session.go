package storeclient

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// sessionMetadata is the gRPC metadata key the storage tier reads a session
// token from.
const sessionMetadata = "mailfleet-session"

// Session is a logged-in user's credential towards the storage tier: the
// short-lived token Authenticate returned, bound to the account and to this
// tier. Calls made with a context from WithSession carry it; it is renewed
// when half its life is gone (on the next call, or by KeepFresh while the
// user is idle), for as long as the account may log in.
type Session struct {
	client *Client

	mu         sync.Mutex
	token      string // empty: the storage tier issued none (an admin caller)
	issued     time.Time
	expires    time.Time
	refreshing bool
	retryAt    time.Time     // after a failed renewal, not before this
	refused    bool          // the storage tier refused to renew: the session ends at expiry
	revived    chan struct{} // signalled when a new login brings a new token
}

// NewSession wraps the token of a successful Authenticate.
func (c *Client) NewSession(resp *storagev1.AuthenticateResponse) *Session {
	s := &Session{client: c, revived: make(chan struct{}, 1)}
	s.set(resp.GetSessionToken(), resp.GetSessionExpiresAt())
	return s
}

func (s *Session) set(token string, exp *timestamppb.Timestamp) {
	s.token, s.issued, s.expires = token, time.Now(), exp.AsTime()
}

// Offer adopts the token of a newer login of the same account if it lasts
// longer (several sessions of one user share one Session).
func (s *Session) Offer(resp *storagev1.AuthenticateResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if exp := resp.GetSessionExpiresAt().AsTime(); exp.After(s.expires) {
		s.set(resp.GetSessionToken(), resp.GetSessionExpiresAt())
		s.refused, s.retryAt = false, time.Time{}
		select {
		case s.revived <- struct{}{}:
		default:
		}
	}
}

// due reports whether half the token's life is gone and a renewal may be
// tried now.
func (s *Session) due() bool {
	now := time.Now()
	return s.token != "" && !s.refused && now.After(s.retryAt) && now.After(s.issued.Add(s.expires.Sub(s.issued)/2))
}

// current returns the token to send, renewing it first if it is due. A
// failed renewal is not retried for a while (calls go on with the token
// they have), and a refused one never.
func (s *Session) current(ctx context.Context) string {
	s.mu.Lock()
	if !s.due() || s.refreshing {
		defer s.mu.Unlock()
		return s.token
	}
	s.refreshing = true
	s.mu.Unlock()
	err := s.refresh()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshing = false
	if err != nil {
		s.retryAt = time.Now().Add(30 * time.Second)
		s.refused = ReasonIsAuth(err)
	}
	return s.token
}

// refresh exchanges the token for a new one. On failure the old one is kept
// until it expires; after that the storage tier answers Unauthenticated and
// the user's session ends.
func (s *Session) refresh() error {
	s.mu.Lock()
	old := s.token
	s.mu.Unlock()
	// Not ctx itself: the refresh carries the token in its request, not as
	// the call's credential.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.client.Accounts.RefreshSession(ctx, &storagev1.RefreshSessionRequest{SessionToken: old})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.set(resp.SessionToken, resp.SessionExpiresAt)
	s.mu.Unlock()
	return nil
}

// KeepFresh renews the token at half-life until ctx ends: a user idle for
// longer than the token lives (an IMAP IDLE of hours) keeps a valid one.
// It stops when the storage tier refuses (the account was disabled or
// deleted): the session's next call then fails.
func (s *Session) KeepFresh(ctx context.Context, log *slog.Logger) {
	s.mu.Lock()
	none := s.token == ""
	s.mu.Unlock()
	if none {
		return // nothing to renew
	}
	for {
		s.mu.Lock()
		wait := time.Until(s.issued.Add(s.expires.Sub(s.issued) / 2))
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, time.Second)):
		}
		if err := s.refresh(); err != nil {
			if ctx.Err() != nil {
				return
			}
			if ReasonIsAuth(err) {
				// Until a new login of the user brings a new token.
				log.Info("storage refused to renew the session; it ends at its expiry", "err", err)
				s.mu.Lock()
				s.refused = true
				s.mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-s.revived:
				}
				continue
			}
			log.Warn("renewing the storage session failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
		}
	}
}

// ReasonIsAuth reports whether err is the storage tier refusing a login or
// a session.
func ReasonIsAuth(err error) bool {
	return storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_AUTH_FAILED
}

type sessionKey struct{}

// WithSession returns ctx whose storage calls act for s's user.
func WithSession(ctx context.Context, s *Session) context.Context {
	if s == nil {
		return ctx
	}
	return context.WithValue(ctx, sessionKey{}, s)
}

// withToken adds the session token of ctx's Session, if any, to the call.
func withToken(ctx context.Context) context.Context {
	s, _ := ctx.Value(sessionKey{}).(*Session)
	if s == nil {
		return ctx
	}
	token := s.current(ctx)
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, sessionMetadata, token)
}

func sessionUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(withToken(ctx), method, req, reply, cc, opts...)
}

func sessionStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(withToken(ctx), desc, cc, method, opts...)
}
