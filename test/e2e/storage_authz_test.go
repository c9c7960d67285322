package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
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
	"google.golang.org/grpc/status"

	"github.com/mailfleet/mailfleet/pkg/apiprobe"
	"github.com/mailfleet/mailfleet/pkg/devpki"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/test/cluster"
)

// mailctlCommand is mailctl against a storage address, as the cluster's
// admin: with the admin certificate of a local cluster c, or (c nil: the
// chart on Kubernetes) with the MAILFLEET_STORAGE_* environment the
// e2e-k8s script exports from the admin Secret.
func mailctlCommand(c *cluster.Cluster, storage string, args ...string) *exec.Cmd {
	cmd := exec.Command(binDir+"/mailctl", append([]string{"--storage", storage}, args...)...)
	cmd.Env = os.Environ()
	if c != nil {
		cmd.Env = c.MailctlEnv()
	}
	return cmd
}

// assertStorageRefusesStrangers checks the storage API at addr as an
// attacker inside the cluster would find it: a caller without a tier
// certificate signed by the internal CA gets Unauthenticated on every
// method of the API, a plaintext one gets no connection at all, and (when
// pki has the tiers' certificates) a tier's identity gets PermissionDenied
// outside its role.
func assertStorageRefusesStrangers(t *testing.T, addr string, pki *devpki.PKI) {
	t.Helper()
	methods, err := apiprobe.Methods()
	if err != nil {
		t.Fatal(err)
	}
	// The attacker does not know the CA: it skips checking the server.
	foreign, err := devpki.Ensure(filepath.Join(t.TempDir(), "foreign"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	foreignCert, foreignKey := foreign.Cert("admin")
	forged, err := tls.LoadX509KeyPair(foreignCert, foreignKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, caller := range []struct {
		name  string
		certs []tls.Certificate
	}{{"no client certificate", nil}, {"an admin certificate from another CA", []tls.Certificate{forged}}} {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, Certificates: caller.certs})))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range methods {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := apiprobe.Call(ctx, conn, m, nil)
			cancel()
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("%s: %s answered %v, want Unauthenticated", caller.name, m.Name, err)
			}
		}
		conn.Close()
	}
	plain, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := storagev1.NewAccountServiceClient(plain).ListAccounts(ctx, &storagev1.ListAccountsRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext caller: %v, want Unavailable (no connection without TLS)", err)
	}
	if pki == nil {
		return
	}
	for _, role := range []string{"access", "inbound", "submission", "queue"} {
		tlsCfg, err := pki.ClientTLS(role)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = storagev1.NewAccountServiceClient(conn).ListAccounts(ctx, &storagev1.ListAccountsRequest{})
		conn.Close()
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s listing every account: %v, want PermissionDenied", role, err)
		}
	}
}

// With every tier on its own identity, mail flows through inbound and
// access as usual, while the storage API refuses strangers and tiers
// outside their role.
func TestStorageRefusesStrangers(t *testing.T) {
	dns, _ := startDNS(t)
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1, Inbound: 1, DNS: dns.Addr})
	acc := c.CreateAccount("tls@example.test", "tls-secret-pw")
	if err := sendSMTP(c.Inbound[0].SMTP, "s@example.org", []string{"tls@example.test"}, []byte("Subject: over mTLS\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	if bodies, _ := inboxBodies(t, c, acc.Id); len(bodies) != 1 {
		t.Fatalf("%d messages", len(bodies))
	}
	cl := imapLogin(t, c.Access[0].IMAPS, "tls@example.test", "tls-secret-pw", nil)
	if st, err := cl.Select("INBOX", nil).Wait(); err != nil || st.NumMessages != 1 {
		t.Fatalf("IMAP through mTLS storage: %v %v", st, err)
	}
	assertStorageRefusesStrangers(t, c.Storage[0].Addr, c.PKI)
}

// A user's storage session is renewed while the IMAP session lasts, but not
// past --session-max-age: then the IMAP connection ends with BYE (the
// client logs in again) instead of answering NO to every command.
func TestIMAPSessionPastItsMaximumAgeEndsWithBye(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1,
		StorageArgs: []string{"--session-ttl", "3s", "--session-max-age", "5s"}})
	c.CreateAccount("age@example.test", "age-secret")
	r := rawDial(t, c.Access[0].IMAPS, true)
	r.expect("LOGIN age@example.test age-secret", "OK")
	r.expect("SELECT INBOX", "OK")
	// Renewals keep it going past the first token's life.
	time.Sleep(4 * time.Second)
	r.expect("STATUS INBOX (MESSAGES)", "OK")
	// Past the maximum age and the last token's expiry.
	time.Sleep(6 * time.Second)
	fmt.Fprintf(r.conn, "s1 STATUS INBOX (MESSAGES)\r\n")
	if l := r.line(); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("after the maximum age: %q, want * BYE", l)
	}
	if !r.closed() {
		t.Fatal("the connection stayed open after BYE")
	}
	// Logging in again works.
	r2 := rawDial(t, c.Access[0].IMAPS, true)
	r2.expect("LOGIN age@example.test age-secret", "OK")
	r2.expect("STATUS INBOX (MESSAGES)", "OK")
}
