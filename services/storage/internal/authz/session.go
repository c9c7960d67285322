package authz

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// SessionMetadata is the gRPC metadata key that carries a session token.
const SessionMetadata = "mailfleet-session"

// Session is what a valid session token says.
type Session struct {
	Role    Role
	Account string
	Expires time.Time
}

// Sessions issues and checks session tokens: HMAC-SHA256 over the role,
// the account and the expiry, with a key every storage replica shares (kept
// in etcd, which only the storage tier reaches). A token is a bearer
// credential for one account from one tier, for TTL; it cannot be forged
// without the key, and it is useless to another tier's identity.
type Sessions struct {
	key []byte
	TTL time.Duration
	now func() time.Time
}

// NewSessions returns an issuer with the shared key.
func NewSessions(key []byte, ttl time.Duration) *Sessions {
	return &Sessions{key: key, TTL: ttl, now: time.Now}
}

// ErrBadSession is the answer for a token that is malformed, forged or
// expired.
var ErrBadSession = errors.New("session token invalid or expired: log in again")

const tokenVersion = "v1"

// Issue returns a token for account, usable by role until the returned time.
func (s *Sessions) Issue(role Role, account string) (string, time.Time) {
	exp := s.now().Add(s.TTL).Truncate(time.Second)
	payload := strings.Join([]string{tokenVersion, string(role), account, strconv.FormatInt(exp.Unix(), 10)}, "\n")
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload)), exp
}

// Check verifies a token and returns what it says.
func (s *Sessions) Check(token string) (*Session, error) {
	p64, m64, ok := strings.Cut(token, ".")
	if !ok {
		return nil, ErrBadSession
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	mac, err2 := base64.RawURLEncoding.DecodeString(m64)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.mac(string(payload))) {
		return nil, ErrBadSession
	}
	f := strings.Split(string(payload), "\n")
	if len(f) != 4 || f[0] != tokenVersion || f[2] == "" {
		return nil, ErrBadSession
	}
	exp, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil || !s.now().Before(time.Unix(exp, 0)) {
		return nil, ErrBadSession
	}
	return &Session{Role: Role(f[1]), Account: f[2], Expires: time.Unix(exp, 0)}, nil
}

func (s *Sessions) mac(payload string) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(payload))
	return h.Sum(nil)
}
