package tlsreload

import (
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/pkg/devpki"
)

// serveOnce accepts one TLS connection with cert and completes the handshake.
func serveOnce(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func storageCert(t *testing.T, p *devpki.PKI) tls.Certificate {
	t.Helper()
	certFile, keyFile := p.Cert("storage")
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The client checks the server as crypto/tls would (chain to the CA, the
// dialled name) against the CA file as it is now: a rotated CA is trusted
// without a restart.
func TestMutualClientVerifiesAgainstTheCurrentCA(t *testing.T) {
	dir := t.TempDir()
	oldCA, err := devpki.Ensure(filepath.Join(dir, "old"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := devpki.Ensure(filepath.Join(dir, "new"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	copyFile(t, oldCA.CA(), caFile)
	clientCert, clientKey := oldCA.Cert("access")
	cfg, err := MutualClient(caFile, clientCert, clientKey, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	dial := func(addr, name string) error {
		c := cfg.Clone()
		c.ServerName = name
		conn, err := tls.Dial("tcp", addr, c)
		if err == nil {
			conn.Close()
		}
		return err
	}
	if err := dial(serveOnce(t, storageCert(t, oldCA)), "127.0.0.1"); err != nil {
		t.Fatalf("server of the trusted CA: %v", err)
	}
	if err := dial(serveOnce(t, storageCert(t, oldCA)), "storage.elsewhere.test"); err == nil {
		t.Fatal("a certificate that does not name the server was accepted")
	}
	if err := dial(serveOnce(t, storageCert(t, newCA)), "127.0.0.1"); err == nil {
		t.Fatal("a server of another CA was accepted")
	}
	// The CA is rotated: the file changes, the next handshake after
	// CheckInterval trusts the new one.
	time.Sleep(CheckInterval + 100*time.Millisecond)
	copyFile(t, newCA.CA(), caFile)
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(caFile, future, future)
	time.Sleep(CheckInterval + 100*time.Millisecond)
	if err := dial(serveOnce(t, storageCert(t, newCA)), "127.0.0.1"); err != nil {
		t.Fatalf("server of the rotated CA: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
