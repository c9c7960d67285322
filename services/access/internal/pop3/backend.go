// Package pop3 is a POP3 server (RFC 1939, RFC 2449 CAPA and response codes,
// RFC 2595 STLS, RFC 5034 SASL PLAIN) over a small Backend.
//
// Implementation notes:
//   - A session sees a snapshot of INBOX taken at login; deletions are only
//     marks until QUIT (the UPDATE state). A dropped connection, a timeout or
//     a server shutdown deletes nothing.
//   - The maildrop is exclusively locked for the session (Backend.Open); the
//     lock is released on every way out.
//   - No password or message content is ever logged.
//   - Before login, only CAPA, STLS, USER, PASS, AUTH and QUIT exist; a few
//     unknown commands close the connection (cross-protocol attacks).
package pop3

import (
	"context"
	"errors"
	"io"
)

// Errors a Backend returns that the protocol reports specially.
var (
	ErrAuthFailed = errors.New("authentication failed")
	ErrLocked     = errors.New("too many failed logins")
	ErrInUse      = errors.New("maildrop in use")
	ErrTemporary  = errors.New("temporary failure")
)

// MessageInfo is one message of the maildrop snapshot.
type MessageInfo struct {
	// UID is the unique-id listing's value: stable across sessions and pods.
	UID string
	// Size is the octet count as served (CRLF line endings, before dot-stuffing).
	Size uint64
}

// Backend authenticates users and opens their maildrops.
type Backend interface {
	// Authenticate returns the login, ErrAuthFailed, or ErrLocked when
	// the cluster has seen too many failures for the username or the
	// client's address.
	Authenticate(ctx context.Context, username, password, clientIP string) (Login, error)
	// Open locks the login's maildrop and returns it, or ErrInUse.
	Open(ctx context.Context, login Login) (Maildrop, error)
}

// Login is a successful authentication.
type Login struct {
	// Account is an opaque account id (for logs).
	Account string
	// Credential is what the backend needs to act for the user; the
	// protocol only hands it back to Open.
	Credential any
}

// Maildrop is one locked INBOX.
type Maildrop interface {
	// Messages is the snapshot taken when the maildrop was opened.
	Messages() []MessageInfo
	// Body opens message i (0-based index into Messages).
	Body(ctx context.Context, i int) (io.ReadCloser, error)
	// Delete removes the messages with these indexes for good.
	Delete(ctx context.Context, indexes []int) error
	// Close releases the lock. It is called exactly once.
	Close() error
}
