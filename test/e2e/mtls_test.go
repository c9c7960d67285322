package e2e

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/test/cluster"
)

// With mTLS between tiers, mail flows through inbound and access as usual,
// and a client without a certificate signed by the internal CA is refused.
func TestInternalMTLS(t *testing.T) {
	dns, _ := startDNS(t)
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1, Inbound: 1, DNS: dns.Addr, InternalTLS: true})
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
	try := func(creds credentials.TransportCredentials) error {
		conn, err := grpc.NewClient(c.Storage[0].Addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = storagev1.NewAccountServiceClient(conn).ListDomains(ctx, &storagev1.ListDomainsRequest{})
		return err
	}
	if err := try(insecure.NewCredentials()); err == nil {
		t.Fatal("plaintext client accepted")
	}
	if err := try(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})); err == nil {
		t.Fatal("TLS client without a certificate accepted")
	}
}
