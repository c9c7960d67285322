package tlsaccept

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"
)

func testConfig(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// A client that never completes its handshake (silent, or dripping bytes)
// is cut off after the timeout, and neither it nor a failed handshake
// holds up the clients that do complete theirs.
func TestHandshakeIsBounded(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	failures := make(chan error, 10)
	l := NewListener(inner, testConfig(t), 300*time.Millisecond)
	l.OnHandshakeError = func(_ net.Addr, err error) { failures <- err }
	defer l.Close()

	silent, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	dripping, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dripping.Close()
	go func() { // a TLS record header, one byte at a time
		for _, b := range []byte{0x16, 0x03, 0x01, 0x00, 0x80} {
			if _, err := dripping.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	good := make(chan error, 1)
	go func() {
		c, err := tls.Dial("tcp", inner.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			_, err = c.Write([]byte("hello"))
			c.Close()
		}
		good <- err
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*tls.Conn); !ok {
		t.Fatalf("Accept returned %T, want *tls.Conn (go-imap and go-smtp recognise TLS by it)", c)
	}
	buf := make([]byte, 5)
	if _, err := c.Read(buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
	c.Close()
	if err := <-good; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		select {
		case err := <-failures:
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("handshake failure %v, want a timeout", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a stalled handshake was not cut off")
		}
	}
	// The stalled clients were disconnected.
	silent.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := silent.Read(buf); err == nil {
		t.Fatal("the silent client's connection is still open")
	}
}

// Close ends Accept with net.ErrClosed.
func TestCloseEndsAccept(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, testConfig(t), time.Second)
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}
