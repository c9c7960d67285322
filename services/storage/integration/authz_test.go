package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/mailfleet/mailfleet/pkg/apiprobe"
	"github.com/mailfleet/mailfleet/pkg/devpki"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Who may call what, written down here independently of the server's rule
// table (authz/rules.go): "any" = the role may call it for anyone, "session"
// = only with a user's session token, for that user's account. A role not
// listed gets PermissionDenied. Every method of the API must be listed: a
// method added without a decision here fails TestStorageAPIAuthorization.
var expectedPolicy = map[string]map[string]string{
	"/mailfleet.storage.v1.AccountService/CreateDomain":     {"admin": "any"},
	"/mailfleet.storage.v1.AccountService/DeleteDomain":     {"admin": "any"},
	"/mailfleet.storage.v1.AccountService/ListDomains":      {"admin": "any"},
	"/mailfleet.storage.v1.AccountService/CreateAccount":    {"admin": "any"},
	"/mailfleet.storage.v1.AccountService/DeleteAccount":    {"admin": "any"},
	"/mailfleet.storage.v1.AccountService/GetAccount":       {"admin": "any", "access": "session", "submission": "session"},
	"/mailfleet.storage.v1.AccountService/ListAccounts":     {"admin": "any"},
	"/mailfleet.storage.v1.AccountService/SetPassword":      {"admin": "any"},
	"/mailfleet.storage.v1.AccountService/SetQuota":         {"admin": "any"},
	"/mailfleet.storage.v1.AccountService/SetDisabled":      {"admin": "any"},
	"/mailfleet.storage.v1.AccountService/AddAlias":         {"admin": "any"},
	"/mailfleet.storage.v1.AccountService/RemoveAlias":      {"admin": "any"},
	"/mailfleet.storage.v1.AccountService/Authenticate":     {"admin": "any", "access": "any", "submission": "any"},
	"/mailfleet.storage.v1.AccountService/RefreshSession":   {"access": "any", "submission": "any"},
	"/mailfleet.storage.v1.AccountService/ResolveRecipient": {"admin": "any", "inbound": "any", "submission": "any", "queue": "any"},
	"/mailfleet.storage.v1.AccountService/LockAccount":      {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.AccountService/RenewAccountLock": {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.AccountService/UnlockAccount":    {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.AccountService/GenerateDKIMKey":  {"admin": "any"},
	"/mailfleet.storage.v1.AccountService/GetDKIMKey":       {"admin": "any", "submission": "session"},
	"/mailfleet.storage.v1.AccountService/ListDKIMKeys":     {"admin": "any"},
	"/mailfleet.storage.v1.AccountService/RemoveDKIMKey":    {"admin": "any"},
	"/mailfleet.storage.v1.MailboxService/ListMailboxes":    {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MailboxService/GetMailbox":       {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MailboxService/CreateMailbox":    {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MailboxService/DeleteMailbox":    {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MailboxService/RenameMailbox":    {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MailboxService/SetSubscribed":    {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MailboxService/ClaimRecent":      {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MessageService/AppendMessage":    {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MessageService/AppendMessages":   {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MessageService/ListMessages":     {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MessageService/GetMessageBody":   {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MessageService/StoreFlags":       {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MessageService/CopyMessages":     {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MessageService/MoveMessages":     {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MessageService/ExpungeMessages":  {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.MessageService/ListVanished":     {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.WatchService/Watch":              {"admin": "any", "access": "session"},
	"/mailfleet.storage.v1.DeliveryService/Deliver":         {"admin": "any", "inbound": "any", "submission": "session", "queue": "any"},
	"/mailfleet.storage.v1.QueueService/Enqueue":            {"admin": "any", "submission": "session"},
	"/mailfleet.storage.v1.QueueService/Lease":              {"admin": "any", "queue": "any"},
	"/mailfleet.storage.v1.QueueService/RenewLease":         {"admin": "any", "queue": "any"},
	"/mailfleet.storage.v1.QueueService/GetQueueBody":       {"admin": "any", "queue": "any"},
	"/mailfleet.storage.v1.QueueService/RecordAttempt":      {"admin": "any", "queue": "any"},
	"/mailfleet.storage.v1.QueueService/Complete":           {"admin": "any", "queue": "any"},
	"/mailfleet.storage.v1.QueueService/Bounce":             {"admin": "any", "queue": "any"},
	"/mailfleet.storage.v1.QueueService/Release":            {"admin": "any", "queue": "any"},
	"/mailfleet.storage.v1.QueueService/DeliverQueued":      {"admin": "any", "queue": "any"},
	"/mailfleet.storage.v1.QueueService/ListQueue":          {"admin": "any", "queue": "any"},
	"/mailfleet.storage.v1.QueueService/GetQueueItem":       {"admin": "any"},
	"/mailfleet.storage.v1.QueueService/RetryQueueItem":     {"admin": "any"},
	"/mailfleet.storage.v1.QueueService/DeleteQueueItem":    {"admin": "any"},
	"/mailfleet.storage.v1.MaintenanceService/Check":        {"admin": "any"},
	"/mailfleet.storage.v1.MaintenanceService/Backup":       {"admin": "any"},
	"/mailfleet.storage.v1.MaintenanceService/Restore":      {"admin": "any"},
	"/grpc.health.v1.Health/Check":                          {"admin": "any", "inbound": "any", "submission": "any", "queue": "any", "access": "any"},
	"/grpc.health.v1.Health/Watch":                          {"admin": "any", "inbound": "any", "submission": "any", "queue": "any", "access": "any"},
	"/grpc.health.v1.Health/List":                           {"admin": "any", "inbound": "any", "submission": "any", "queue": "any", "access": "any"},
}

// probe calls m and returns the gRPC code of the answer; an answer of the
// method itself (it carries an ErrorInfo reason, such as AUTH_FAILED for a
// wrong password) counts as served: OK.
func probe(ctx context.Context, conn *grpc.ClientConn, m apiprobe.Method, req proto.Message) codes.Code {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := apiprobe.Call(ctx, conn, m, req)
	if storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return codes.OK
	}
	return status.Code(err)
}

// refused reports whether a code is an authorization answer.
func refused(c codes.Code) bool { return c == codes.PermissionDenied || c == codes.Unauthenticated }

// tlsWith is a client config that trusts the test CA and presents the given
// certificate (none when certFile is empty).
func tlsWith(t *testing.T, certFile, keyFile string) credentials.TransportCredentials {
	t.Helper()
	cfg, err := pki.ClientTLS("admin")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Certificates = nil
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg)
}

func dialCreds(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func dialRole(t *testing.T, addr, role string) *grpc.ClientConn {
	t.Helper()
	conn, err := dialAs(addr, role)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// withSession returns ctx carrying a session token.
func withSession(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "mailfleet-session", token)
}

// requestFor builds a request of m that names account (and, where the
// method names a sender or a domain, an address of it).
func requestFor(m apiprobe.Method, account, address string) proto.Message {
	_, domain, _ := cutLast(address)
	switch m.Name {
	case "/mailfleet.storage.v1.MessageService/AppendMessage":
		return &storagev1.AppendMessageRequest{Part: &storagev1.AppendMessageRequest_Metadata_{Metadata: &storagev1.AppendMessageRequest_Metadata{AccountId: account, MailboxName: "INBOX"}}}
	case "/mailfleet.storage.v1.MessageService/AppendMessages":
		return &storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Target_{Target: &storagev1.AppendMessagesRequest_Target{AccountId: account, MailboxName: "INBOX"}}}
	case "/mailfleet.storage.v1.DeliveryService/Deliver":
		return &storagev1.DeliverRequest{Part: &storagev1.DeliverRequest_Metadata_{Metadata: &storagev1.DeliverRequest_Metadata{
			Recipients: []string{address}, MailFrom: address,
			Outbound: &storagev1.EnqueueRequest_Metadata{AccountId: account, MailFrom: address, Recipients: []string{"x@remote.test"}}}}}
	case "/mailfleet.storage.v1.QueueService/Enqueue":
		return &storagev1.EnqueueRequest{Part: &storagev1.EnqueueRequest_Metadata_{Metadata: &storagev1.EnqueueRequest_Metadata{AccountId: account, MailFrom: address, Recipients: []string{"x@remote.test"}}}}
	case "/mailfleet.storage.v1.AccountService/GetDKIMKey":
		return &storagev1.GetDKIMKeyRequest{Domain: domain}
	}
	req := m.Input.New()
	if f := req.Descriptor().Fields().ByName("account_id"); f != nil {
		req.Set(f, protoreflect.ValueOfString(account))
	}
	if f := req.Descriptor().Fields().ByName("name"); f != nil && f.Kind() == protoreflect.StringKind {
		req.Set(f, protoreflect.ValueOfString("maildrop"))
	}
	return req.Interface()
}

// The storage API refuses every caller without a tier certificate signed by
// the internal CA (Unauthenticated, on every method) and each tier outside
// its role (PermissionDenied); the access and submission tiers act only for
// the account whose session token they carry.
func TestStorageAPIAuthorization(t *testing.T) {
	c := newCluster(t, options{driver: "fs"})
	r := c.replicas[0]
	ctx := ctxT(t)
	alice := setupAccount(t, r, "alice@example.test", 0, 0)
	bob := setupAccount(t, r, "bob@example.test", 0, 0)
	carol := setupAccount(t, r, "carol@other.test", 0, 0) // another domain too

	methods, err := apiprobe.Methods()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range methods {
		seen[m.Name] = true
		if _, ok := expectedPolicy[m.Name]; !ok {
			t.Errorf("%s: the API has this method but the test states no policy for it (add it to expectedPolicy and to authz/rules.go)", m.Name)
		}
	}
	for name := range expectedPolicy {
		if !seen[name] {
			t.Errorf("%s: in expectedPolicy but not in the API", name)
		}
	}

	// 1. Callers without a valid tier identity: Unauthenticated everywhere.
	other, err := devpki.Ensure(filepath.Join(t.TempDir(), "other-ca"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey := other.Cert("admin")
	noRoleCert, noRoleKey, err := pki.Issue("norole", "mailfleet-root", x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	serverUsageCert, serverUsageKey, err := pki.Issue("admin-serverauth", "mailfleet-admin", x509.ExtKeyUsageServerAuth)
	if err != nil {
		t.Fatal(err)
	}
	storageCert, storageKey := pki.Cert("storage")
	for _, caller := range []struct{ name, cert, key string }{
		{"no client certificate", "", ""},
		{"admin certificate of another CA", otherCert, otherKey},
		{"certificate naming no role", noRoleCert, noRoleKey},
		{"admin CN without client-auth usage", serverUsageCert, serverUsageKey},
		{"the storage server's own certificate", storageCert, storageKey},
	} {
		conn := dialCreds(t, r.addr, tlsWith(t, caller.cert, caller.key))
		for _, m := range methods {
			if got := probe(ctx, conn, m, nil); got != codes.Unauthenticated {
				t.Errorf("%s: %s answered %v, want Unauthenticated", caller.name, m.Name, got)
			}
		}
	}
	// A plaintext caller does not even get a connection.
	plain := dialCreds(t, r.addr, insecure.NewCredentials())
	if _, err := storagev1.NewAccountServiceClient(plain).ListAccounts(ctx, &storagev1.ListAccountsRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext caller: %v, want Unavailable (no TLS, no connection)", err)
	}

	// 2. Each tier's identity, without a session: PermissionDenied outside
	// its role and for whatever needs a user's session.
	conns := map[string]*grpc.ClientConn{}
	for _, role := range devpki.Roles {
		conns[role] = dialRole(t, r.addr, role)
		for _, m := range methods {
			got := probe(ctx, conns[role], m, nil)
			switch expectedPolicy[m.Name][role] {
			case "any":
				if refused(got) {
					t.Errorf("%s: %s answered %v, want it served", role, m.Name, got)
				}
			default: // not allowed, or not without a session
				if got != codes.PermissionDenied {
					t.Errorf("%s: %s without a session answered %v, want PermissionDenied", role, m.Name, got)
				}
			}
		}
	}

	// 3. Sessions: a login through a tier returns a token bound to the
	// account and to that tier.
	login := func(role, user string) string {
		resp, err := storagev1.NewAccountServiceClient(conns[role]).Authenticate(ctx, &storagev1.AuthenticateRequest{Username: user, Password: "pw-" + user})
		if err != nil {
			t.Fatalf("%s login of %s: %v", role, user, err)
		}
		if resp.SessionToken == "" || time.Until(resp.SessionExpiresAt.AsTime()) < 50*time.Minute {
			t.Fatalf("%s login of %s: session %q until %v, want a token for about an hour", role, user, resp.SessionToken, resp.SessionExpiresAt.AsTime())
		}
		return resp.SessionToken
	}
	tokens := map[string]string{"access": login("access", alice.Address), "submission": login("submission", alice.Address)}
	// A key DKIM can sign with, so that GetDKIMKey of alice's domain succeeds.
	if _, err := r.Accounts.GenerateDKIMKey(ctx, &storagev1.GenerateDKIMKeyRequest{Domain: "example.test", Algorithm: "ed25519"}); err != nil {
		t.Fatal(err)
	}
	for _, m := range methods {
		for _, role := range []string{"access", "submission"} {
			if expectedPolicy[m.Name][role] != "session" {
				continue
			}
			sctx := withSession(ctx, tokens[role])
			if got := probe(sctx, conns[role], m, requestFor(m, alice.Id, alice.Address)); refused(got) {
				t.Errorf("%s with alice's session: %s for alice answered %v, want it served", role, m.Name, got)
			}
			for _, other := range []*storagev1.Account{bob, carol} {
				if got := probe(sctx, conns[role], m, requestFor(m, other.Id, other.Address)); got != codes.PermissionDenied && !(m.Name == "/mailfleet.storage.v1.AccountService/GetDKIMKey" && other == bob) {
					t.Errorf("%s with alice's session: %s for %s answered %v, want PermissionDenied", role, m.Name, other.Address, got)
				}
			}
			// A token is useless to another tier's identity.
			otherRole := map[string]string{"access": "submission", "submission": "access"}[role]
			if expectedPolicy[m.Name][otherRole] == "session" {
				if got := probe(sctx, conns[otherRole], m, requestFor(m, alice.Id, alice.Address)); got != codes.PermissionDenied {
					t.Errorf("%s with %s's session token: %s answered %v, want PermissionDenied", otherRole, role, m.Name, got)
				}
			}
		}
	}
	// Submission may sign only with the key of the user's own domain, and
	// send only as one of the user's addresses.
	subCtx := withSession(ctx, tokens["submission"])
	sub := storagev1.NewAccountServiceClient(conns["submission"])
	if _, err := sub.GetDKIMKey(subCtx, &storagev1.GetDKIMKeyRequest{Domain: "other.test"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("submission as alice reading other.test's DKIM key: %v, want PermissionDenied", err)
	}
	forged := requestFor(methodNamed(t, methods, "/mailfleet.storage.v1.DeliveryService/Deliver"), alice.Id, alice.Address).(*storagev1.DeliverRequest)
	forged.GetMetadata().MailFrom = bob.Address
	if got := probe(subCtx, conns["submission"], methodNamed(t, methods, "/mailfleet.storage.v1.DeliveryService/Deliver"), forged); got != codes.PermissionDenied {
		t.Errorf("submission as alice delivering with bob's envelope sender: %v, want PermissionDenied", got)
	}
	// A forged or altered token is an authentication failure.
	tampered := tokens["access"][:len(tokens["access"])-2] + "xx"
	if _, err := storagev1.NewMailboxServiceClient(conns["access"]).ListMailboxes(withSession(ctx, tampered), &storagev1.ListMailboxesRequest{AccountId: alice.Id}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("altered token: %v, want Unauthenticated", err)
	}
	// The access tier takes only the maildrop lock (a user's session must
	// not fill etcd with locks), and a lock of another account cannot be
	// kept alive by its number.
	accessCtx := withSession(ctx, tokens["access"])
	if _, err := storagev1.NewAccountServiceClient(conns["access"]).LockAccount(accessCtx, &storagev1.LockAccountRequest{AccountId: alice.Id, Name: "test-lock"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("access taking a lock other than maildrop: %v, want PermissionDenied", err)
	}
	lock, err := r.Accounts.LockAccount(ctx, &storagev1.LockAccountRequest{AccountId: alice.Id, Name: "test-lock"})
	if err != nil {
		t.Fatal(err)
	}
	// Neither the MX nor the queue runner may queue mail to other domains
	// as a user: a stolen identity of theirs is no relay.
	relay := requestFor(methodNamed(t, methods, "/mailfleet.storage.v1.DeliveryService/Deliver"), alice.Id, alice.Address)
	for _, role := range []string{"inbound", "queue"} {
		if got := probe(ctx, conns[role], methodNamed(t, methods, "/mailfleet.storage.v1.DeliveryService/Deliver"), relay); got != codes.PermissionDenied {
			t.Errorf("%s queueing outbound mail as alice: %v, want PermissionDenied", role, got)
		}
	}
	if _, err := r.Accounts.RenewAccountLock(ctx, &storagev1.RenewAccountLockRequest{LockId: lock.LockId, AccountId: bob.Id, Name: "test-lock"}); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_LEASE_LOST {
		t.Errorf("renewing alice's lock as bob's: %v, want LEASE_LOST", err)
	}

	// 4. Refresh: only by the tier the token is for, and only while the
	// account may log in.
	refresh := func(role, token string) (string, error) {
		resp, err := storagev1.NewAccountServiceClient(conns[role]).RefreshSession(ctx, &storagev1.RefreshSessionRequest{SessionToken: token})
		return resp.GetSessionToken(), err
	}
	fresh, err := refresh("access", tokens["access"])
	if err != nil || fresh == "" {
		t.Fatalf("refresh: %q %v", fresh, err)
	}
	if _, err := storagev1.NewMailboxServiceClient(conns["access"]).ListMailboxes(withSession(ctx, fresh), &storagev1.ListMailboxesRequest{AccountId: alice.Id}); err != nil {
		t.Errorf("refreshed token: %v", err)
	}
	if _, err := refresh("submission", tokens["access"]); status.Code(err) != codes.Unauthenticated {
		t.Errorf("submission refreshing access's token: %v, want Unauthenticated", err)
	}
	if _, err := r.Accounts.SetDisabled(ctx, &storagev1.SetDisabledRequest{AccountId: alice.Id, Disabled: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := refresh("access", fresh); status.Code(err) != codes.Unauthenticated {
		t.Errorf("refresh for a disabled account: %v, want Unauthenticated", err)
	}
}

func methodNamed(t *testing.T, methods []apiprobe.Method, name string) apiprobe.Method {
	t.Helper()
	for _, m := range methods {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no method %s", name)
	return apiprobe.Method{}
}

// A session token expires after --session-ttl; refreshed before that, the
// session goes on.
func TestSessionTokenExpires(t *testing.T) {
	c := newCluster(t, options{driver: "fs", extraArgs: []string{"--session-ttl", "3s"}})
	r := c.replicas[0]
	ctx := ctxT(t)
	acc := setupAccount(t, r, "dora@example.test", 0, 0)
	conn := dialRole(t, r.addr, "access")
	accounts, mailboxes := storagev1.NewAccountServiceClient(conn), storagev1.NewMailboxServiceClient(conn)
	resp, err := accounts.Authenticate(ctx, &storagev1.AuthenticateRequest{Username: acc.Address, Password: "pw-" + acc.Address})
	if err != nil {
		t.Fatal(err)
	}
	list := func(token string) error {
		_, err := mailboxes.ListMailboxes(withSession(ctx, token), &storagev1.ListMailboxesRequest{AccountId: acc.Id})
		return err
	}
	if err := list(resp.SessionToken); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	refreshed, err := accounts.RefreshSession(ctx, &storagev1.RefreshSessionRequest{SessionToken: resp.SessionToken})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(resp.SessionExpiresAt.AsTime()) + 100*time.Millisecond)
	if err := list(resp.SessionToken); status.Code(err) != codes.Unauthenticated {
		t.Errorf("expired token: %v, want Unauthenticated", err)
	}
	if _, err := accounts.RefreshSession(ctx, &storagev1.RefreshSessionRequest{SessionToken: resp.SessionToken}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("refreshing an expired token: %v, want Unauthenticated", err)
	}
	if err := list(refreshed.SessionToken); err != nil {
		t.Errorf("token refreshed before expiry, used after the first expired: %v", err)
	}
}

// The storage binary does not start without mutual TLS unless told, loudly,
// to run without it.
func TestStorageRefusesToStartWithoutMTLS(t *testing.T) {
	out, err := runStorage(t, "--grpc-listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--etcd-endpoints", "http://127.0.0.1:1")
	if err == nil || !strings.Contains(out, "--grpc-client-ca") || !strings.Contains(out, "--insecure-plaintext-grpc") {
		t.Fatalf("storage without TLS flags: err %v, output:\n%s", err, out)
	}
}

// runStorage runs the storage binary to its exit (bounded) and returns its output.
func runStorage(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "storage"), args...)
	cmd.Env = append(os.Environ(), "MAILFLEET_TEST_SHORT_GRACE=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}
