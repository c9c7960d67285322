// Package authz decides who may call the storage API and on whose behalf.
//
// Two facts are checked on every call:
//   - Which tier is calling: its client certificate, signed by the internal
//     CA, names a role in its Subject CommonName ("mailfleet-access" and so
//     on). No certificate, or one the CA did not sign: Unauthenticated.
//   - For which user: the access and submission tiers act for a user only
//     after that user logged in. Authenticate returns a short-lived session
//     token bound to the account and to the tier; every call about a
//     mailbox, message or the user's mail must carry it (gRPC metadata
//     "mailfleet-session") and may name only that account.
//
// rules.go lists, for every method of the API, which roles may call it and
// what each must prove. A method missing from the list is refused to every
// role, and the authorization test fails for it.
package authz

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"strings"

	"google.golang.org/grpc/credentials"
)

// Role is what a tier may do.
type Role string

const (
	// Inbound is the MX: it resolves recipients and delivers.
	Inbound Role = "inbound"
	// Submission authenticates users and delivers and enqueues as them.
	Submission Role = "submission"
	// Queue is the outbound queue runner: it leases and completes items.
	Queue Role = "queue"
	// Access is IMAP and POP3: it acts only on logged-in users' accounts.
	Access Role = "access"
	// Admin is mailctl: domains, accounts, keys, the queue, any mailbox.
	Admin Role = "admin"
)

// Roles is every role, in a stable order.
var Roles = []Role{Inbound, Submission, Queue, Access, Admin}

// CommonNamePrefix starts the Subject CommonName of every client
// certificate: "mailfleet-" + role.
const CommonNamePrefix = "mailfleet-"

// CommonName is the Subject CommonName of a role's client certificate.
func CommonName(r Role) string { return CommonNamePrefix + string(r) }

// roleOf reads the role a verified client certificate names.
func roleOf(cert *x509.Certificate) (Role, bool) {
	name, ok := strings.CutPrefix(cert.Subject.CommonName, CommonNamePrefix)
	if !ok {
		return "", false
	}
	for _, r := range Roles {
		if string(r) == name {
			return r, true
		}
	}
	return "", false
}

// PeerInfo is the AuthInfo of a connection that passed the TLS handshake:
// the TLS state, and who the client certificate proves the peer is.
type PeerInfo struct {
	credentials.TLSInfo
	// Role is empty when the peer is not authenticated; Err says why.
	Role Role
	Err  error
}

// errNoCertificate is the reason a peer without a certificate is refused.
var errNoCertificate = errors.New("no client certificate: the storage API needs a tier's certificate signed by the internal CA")

// PoolSource returns the CA pool client certificates are checked against
// (it may reload the CA file).
type PoolSource func() *x509.CertPool

// ServerCredentials wraps TLS transport credentials whose config requests a
// client certificate without checking it (tls.RequestClientCert): the
// certificate is checked here, once per connection, so that a caller
// without a valid one gets an Unauthenticated answer on its call instead of
// a failed handshake it cannot tell from a network fault.
func ServerCredentials(tlsCreds credentials.TransportCredentials, pool PoolSource) credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: tlsCreds, pool: pool}
}

type serverCreds struct {
	credentials.TransportCredentials
	pool PoolSource
}

func (c *serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, info, err
	}
	tlsInfo, ok := info.(credentials.TLSInfo)
	if !ok {
		return conn, info, nil
	}
	peer := PeerInfo{TLSInfo: tlsInfo}
	peer.Role, peer.Err = verify(tlsInfo.State.PeerCertificates, c.pool())
	return conn, peer, nil
}

func (c *serverCreds) Clone() credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: c.TransportCredentials.Clone(), pool: c.pool}
}

// verify checks a peer's certificate chain against the CA pool and reads
// its role.
func verify(chain []*x509.Certificate, pool *x509.CertPool) (Role, error) {
	if len(chain) == 0 {
		return "", errNoCertificate
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", errors.New("client certificate not accepted: " + err.Error())
	}
	role, ok := roleOf(chain[0])
	if !ok {
		return "", errors.New("client certificate names no role (Subject CN " + chain[0].Subject.CommonName + "; want " + CommonNamePrefix + "<role>)")
	}
	return role, nil
}

// Caller is who is calling, as the handlers see it.
type Caller struct {
	Role Role
	// Account and Session are set when the call carried a valid session
	// token (the account it is bound to).
	Account string
	Session *Session
}

type callerKey struct{}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller of the call ctx belongs to.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}
