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
	// Login is when the user gave the password; renewals keep it, and
	// none is granted past MaxAge after it.
	Login time.Time
}

// Sessions issues and checks session tokens: HMAC-SHA256 over the role,
// the account and the expiry, with a key every storage replica shares (kept
// in etcd, which only the storage tier reaches). A token is a bearer
// credential for one account from one tier, for TTL; it cannot be forged
// without the key, and it is useless to another tier's identity.
type Sessions struct {
	key []byte
	TTL time.Duration
	// MaxAge bounds renewals: a session older than this (from its login)
	// is not renewed, and the user logs in again.
	MaxAge time.Duration
	now    func() time.Time
}

// NewSessions returns an issuer with the shared key.
func NewSessions(key []byte, ttl, maxAge time.Duration) *Sessions {
	return &Sessions{key: key, TTL: ttl, MaxAge: maxAge, now: time.Now}
}

// ErrBadSession is the answer for a token that is malformed, forged or
// expired.
var ErrBadSession = errors.New("session token invalid or expired: log in again")

const tokenVersion = "v2"

// Issue returns a token for account, usable by role until the returned
// time, for a login made at login (now, for a fresh one).
func (s *Sessions) Issue(role Role, account string, login time.Time) (string, time.Time) {
	exp := s.now().Add(s.TTL).Truncate(time.Second)
	payload := strings.Join([]string{tokenVersion, string(role), account,
		strconv.FormatInt(exp.Unix(), 10), strconv.FormatInt(login.Unix(), 10)}, "\n")
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload)), exp
}

// Renew returns a fresh token for a session, unless it is older than
// MaxAge.
func (s *Sessions) Renew(old *Session) (string, time.Time, error) {
	if s.MaxAge > 0 && s.now().Sub(old.Login) > s.MaxAge {
		return "", time.Time{}, ErrBadSession
	}
	token, exp := s.Issue(old.Role, old.Account, old.Login)
	return token, exp, nil
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
	if len(f) != 5 || f[0] != tokenVersion || f[2] == "" {
		return nil, ErrBadSession
	}
	exp, err1 := strconv.ParseInt(f[3], 10, 64)
	login, err2 := strconv.ParseInt(f[4], 10, 64)
	if err1 != nil || err2 != nil || !s.now().Before(time.Unix(exp, 0)) {
		return nil, ErrBadSession
	}
	return &Session{Role: Role(f[1]), Account: f[2], Expires: time.Unix(exp, 0), Login: time.Unix(login, 0)}, nil
}

func (s *Sessions) mac(payload string) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(payload))
	return h.Sum(nil)
}
