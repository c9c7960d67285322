package tlsreload

import (
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func serialOf(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestReloadsChangedCertificate(t *testing.T) {
	dirA, dirB, live := t.TempDir(), t.TempDir(), t.TempDir()
	certA, keyA, err := SelfSigned(dirA, []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	certB, keyB, err := SelfSigned(dirB, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	copyFile := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, key := filepath.Join(live, "tls.crt"), filepath.Join(live, "tls.key")
	copyFile(certA, cert)
	copyFile(keyA, key)
	r, err := New(cert, key, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	first := serialOf(t, r.Config())

	// A half-written renewal (certificate without matching key) keeps the old one.
	time.Sleep(CheckInterval + 50*time.Millisecond)
	copyFile(certB, cert)
	if got := serialOf(t, r.Config()); got != first {
		t.Fatal("switched to a certificate whose key does not match")
	}
	time.Sleep(CheckInterval + 50*time.Millisecond)
	copyFile(keyB, key)
	later := time.Now().Add(time.Second)
	os.Chtimes(key, later, later)
	if got := serialOf(t, r.Config()); got == first {
		t.Fatal("renewed certificate not picked up")
	}
	// SelfSigned keeps an existing pair.
	again, _, _ := SelfSigned(dirA, []string{"localhost"})
	b1, _ := os.ReadFile(certA)
	b2, _ := os.ReadFile(again)
	if string(b1) != string(b2) {
		t.Fatal("SelfSigned replaced an existing certificate")
	}
}
