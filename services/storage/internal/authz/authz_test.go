package authz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

func TestSessionTokens(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	s := NewSessions(key, time.Hour, 24*time.Hour)
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return now }
	token, exp := s.Issue(Access, "acct-1", now)
	if !exp.Equal(now.Add(time.Hour)) {
		t.Fatalf("expiry %v", exp)
	}
	got, err := s.Check(token)
	if err != nil || got.Role != Access || got.Account != "acct-1" || !got.Expires.Equal(exp) {
		t.Fatalf("check: %+v %v", got, err)
	}
	// Any change to the token, a token signed with another key, and an
	// expired token are refused.
	other := NewSessions([]byte("another key, another cluster....."), time.Hour, 24*time.Hour)
	other.now = s.now
	foreign, _ := other.Issue(Access, "acct-1", now)
	payload, mac, _ := strings.Cut(token, ".")
	forgedPayload, _, _ := strings.Cut(func() string { t, _ := s.Issue(Admin, "acct-1", now); return t }(), ".")
	for name, bad := range map[string]string{
		"empty":              "",
		"no mac":             payload,
		"mac of another key": foreign,
		"role swapped":       forgedPayload + "." + mac,
		"flipped mac":        payload + "." + strings.Repeat("A", len(mac)),
		"garbage":            "!!!.???",
	} {
		if _, err := s.Check(bad); !errors.Is(err, ErrBadSession) {
			t.Errorf("%s: %v, want ErrBadSession", name, err)
		}
	}
	// Renewals keep the login time; none past MaxAge after it.
	login := now
	for i := 0; i < 47; i++ {
		now = now.Add(30 * time.Minute)
		old, err := s.Check(token)
		if err != nil {
			t.Fatalf("renewal %d: %v", i, err)
		}
		if token, _, err = s.Renew(old); err != nil {
			t.Fatalf("renewal %d at %v after login: %v", i, now.Sub(login), err)
		}
	}
	now = now.Add(31 * time.Minute) // 24 h 1 min after the login
	old, err := s.Check(token)
	if err != nil || !old.Login.Equal(login) {
		t.Fatalf("login time carried: %+v %v", old, err)
	}
	if _, _, err := s.Renew(old); !errors.Is(err, ErrBadSession) {
		t.Errorf("renewal past the maximum age: %v", err)
	}
	now = now.Add(time.Hour)
	if _, err := s.Check(token); !errors.Is(err, ErrBadSession) {
		t.Errorf("expired token: %v", err)
	}
}

type fakeDirectory map[string][]string

func (d fakeDirectory) AccountAddresses(_ context.Context, account string) ([]string, error) {
	return d[account], nil
}

func TestUserBoundChecks(t *testing.T) {
	a := &Authorizer{dir: fakeDirectory{"alice": {"alice@example.test", "al@example.test", "@catchall.test"}}}
	ctx := context.Background()
	aliceAccess := Caller{Role: Access, Account: "alice", Session: &Session{Role: Access, Account: "alice"}}
	aliceSub := Caller{Role: Submission, Account: "alice", Session: &Session{Role: Submission, Account: "alice"}}
	// A token issued to the access tier, presented by submission.
	stolen := Caller{Role: Submission, Account: "alice", Session: &Session{Role: Access, Account: "alice"}}
	deliver := func(account, mailFrom, outFrom string) *storagev1.DeliverRequest {
		md := &storagev1.DeliverRequest_Metadata{MailFrom: mailFrom, Recipients: []string{"x@example.test"}}
		if account != "" {
			md.Outbound = &storagev1.EnqueueRequest_Metadata{AccountId: account, MailFrom: outFrom}
		}
		return &storagev1.DeliverRequest{Part: &storagev1.DeliverRequest_Metadata_{Metadata: md}}
	}
	for _, tc := range []struct {
		name string
		chk  check
		c    Caller
		req  any
		ok   bool
	}{
		{"own mailbox", ownAccount, aliceAccess, &storagev1.ListMailboxesRequest{AccountId: "alice"}, true},
		{"another's mailbox", ownAccount, aliceAccess, &storagev1.ListMailboxesRequest{AccountId: "bob"}, false},
		{"no account named", ownAccount, aliceAccess, &storagev1.ListMailboxesRequest{}, false},
		{"no session", ownAccount, Caller{Role: Access}, &storagev1.ListMailboxesRequest{AccountId: "alice"}, false},
		{"another tier's token", ownAccount, stolen, &storagev1.GetAccountRequest{AccountId: "alice"}, false},
		{"account by address", ownAccount, aliceAccess, &storagev1.GetAccountRequest{Address: "alice@example.test"}, false},
		{"append header, own", ownAccount, aliceAccess, &storagev1.AppendMessageRequest{Part: &storagev1.AppendMessageRequest_Metadata_{Metadata: &storagev1.AppendMessageRequest_Metadata{AccountId: "alice"}}}, true},
		{"append header, another's", ownAccount, aliceAccess, &storagev1.AppendMessageRequest{Part: &storagev1.AppendMessageRequest_Metadata_{Metadata: &storagev1.AppendMessageRequest_Metadata{AccountId: "bob"}}}, false},
		{"append chunk", ownAccount, aliceAccess, &storagev1.AppendMessageRequest{Part: &storagev1.AppendMessageRequest_Chunk{Chunk: &storagev1.BodyChunk{}}}, true},
		{"bulk target, another's", ownAccount, aliceAccess, &storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Target_{Target: &storagev1.AppendMessagesRequest_Target{AccountId: "bob"}}}, false},
		{"deliver as own address", ownSender, aliceSub, deliver("", "alice@example.test", ""), true},
		{"deliver as alias, any case", ownSender, aliceSub, deliver("alice", "AL@example.test", "al@example.test"), true},
		{"deliver as another's address", ownSender, aliceSub, deliver("", "bob@example.test", ""), false},
		{"deliver with a null sender", ownSender, aliceSub, deliver("", "", ""), false},
		{"the catch-all alias itself, as submission compares", ownSender, aliceSub, deliver("", "@catchall.test", ""), true},
		{"queue for another account", ownSender, aliceSub, deliver("bob", "alice@example.test", "alice@example.test"), false},
		{"queue with another's sender", ownSender, aliceSub, deliver("alice", "alice@example.test", "bob@example.test"), false},
		{"enqueue as own", ownSender, aliceSub, &storagev1.EnqueueRequest{Part: &storagev1.EnqueueRequest_Metadata_{Metadata: &storagev1.EnqueueRequest_Metadata{AccountId: "alice", MailFrom: "alice@example.test"}}}, true},
		{"enqueue for another", ownSender, aliceSub, &storagev1.EnqueueRequest{Part: &storagev1.EnqueueRequest_Metadata_{Metadata: &storagev1.EnqueueRequest_Metadata{AccountId: "bob", MailFrom: "alice@example.test"}}}, false},
		{"deliver with another tier's token", ownSender, stolen, deliver("", "alice@example.test", ""), false},
		{"DKIM key of own domain", ownDomain, aliceSub, &storagev1.GetDKIMKeyRequest{Domain: "Example.Test."}, true},
		{"DKIM key of a catch-all domain", ownDomain, aliceSub, &storagev1.GetDKIMKeyRequest{Domain: "catchall.test"}, true},
		{"DKIM key of another domain", ownDomain, aliceSub, &storagev1.GetDKIMKeyRequest{Domain: "other.test"}, false},
		// A stolen MX identity is no relay; the queue runner queues only
		// DSNs from the null sender.
		{"MX delivers locally", localOnly, Caller{Role: Inbound}, deliver("", "x@remote.test", ""), true},
		{"MX queues outbound", localOnly, Caller{Role: Inbound}, deliver("alice", "alice@example.test", "alice@example.test"), false},
		{"runner delivers locally", localOrDSN, Caller{Role: Queue}, deliver("", "", ""), true},
		{"runner queues a DSN", localOrDSN, Caller{Role: Queue}, &storagev1.DeliverRequest{Part: &storagev1.DeliverRequest_Metadata_{Metadata: &storagev1.DeliverRequest_Metadata{
			Outbound: &storagev1.EnqueueRequest_Metadata{Recipients: []string{"x@remote.test"}}}}}, true},
		{"runner queues as a user", localOrDSN, Caller{Role: Queue}, deliver("alice", "", "alice@example.test"), false},
		{"runner queues with a sender", localOrDSN, Caller{Role: Queue}, &storagev1.DeliverRequest{Part: &storagev1.DeliverRequest_Metadata_{Metadata: &storagev1.DeliverRequest_Metadata{
			Outbound: &storagev1.EnqueueRequest_Metadata{MailFrom: "ceo@example.test"}}}}, false},
		{"maildrop lock", ownMaildropLock, aliceAccess, &storagev1.LockAccountRequest{AccountId: "alice", Name: "maildrop"}, true},
		{"another lock name", ownMaildropLock, aliceAccess, &storagev1.LockAccountRequest{AccountId: "alice", Name: "x1"}, false},
	} {
		err := tc.chk(ctx, a, tc.c, tc.req)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want allowed=%v", tc.name, err, tc.ok)
		}
	}
}

// Every rule names known roles only, and admin may call every storage
// method (mailctl is the operator's whole toolbox).
func TestRulesAreWellFormed(t *testing.T) {
	known := map[Role]bool{}
	for _, r := range Roles {
		known[r] = true
	}
	for method, r := range rules {
		if len(r) == 0 {
			t.Errorf("%s: no role may call it", method)
		}
		for role, chk := range r {
			if !known[role] || chk == nil {
				t.Errorf("%s: role %q (check %v)", method, role, chk != nil)
			}
		}
		if strings.HasPrefix(method, "/mailfleet.storage.v1.") && method != "/mailfleet.storage.v1.AccountService/RefreshSession" && !Allowed(method, Admin) {
			t.Errorf("%s: admin may not call it", method)
		}
	}
}

func TestCertificateRoles(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	leaf := func(cn string, usage x509.ExtKeyUsage, signer *ecdsa.PrivateKey, parent *x509.Certificate) []*x509.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		if parent == nil {
			parent, signer = tmpl, key // self-signed
		}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
		c, _ := x509.ParseCertificate(der)
		return []*x509.Certificate{c}
	}
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		role  Role
	}{
		{"access", leaf("mailfleet-access", x509.ExtKeyUsageClientAuth, caKey, ca), Access},
		{"queue", leaf("mailfleet-queue", x509.ExtKeyUsageClientAuth, caKey, ca), Queue},
		{"no certificate", nil, ""},
		{"self-signed admin", leaf("mailfleet-admin", x509.ExtKeyUsageClientAuth, nil, nil), ""},
		{"server usage only", leaf("mailfleet-admin", x509.ExtKeyUsageServerAuth, caKey, ca), ""},
		{"unknown role", leaf("mailfleet-root", x509.ExtKeyUsageClientAuth, caKey, ca), ""},
		{"no prefix", leaf("admin", x509.ExtKeyUsageClientAuth, caKey, ca), ""},
	} {
		role, err := verify(tc.chain, pool)
		if role != tc.role || (tc.role == "") != (err != nil) {
			t.Errorf("%s: role %q err %v, want %q", tc.name, role, err, tc.role)
		}
	}
}
