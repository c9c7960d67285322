package devpki

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
)

func serialOf(t *testing.T, p *PKI, name string) string {
	t.Helper()
	certFile, keyFile := p.Cert(name)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// Ensure makes every identity once, keeps valid ones on the next start (a
// running cluster's files do not change under it), and replaces the storage
// certificate when the names it must cover change.
func TestEnsureKeepsAndRenews(t *testing.T) {
	dir := t.TempDir()
	p, err := Ensure(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, name := range append([]string{"ca", "storage"}, Roles...) {
		before[name] = serialOf(t, p, name)
	}
	if p, err = Ensure(dir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	for name, serial := range before {
		if got := serialOf(t, p, name); got != serial {
			t.Errorf("%s was replaced on a second start", name)
		}
	}
	if p, err = Ensure(dir, []string{"127.0.0.1", "storage.example.test"}); err != nil {
		t.Fatal(err)
	}
	if serialOf(t, p, "storage") == before["storage"] || serialOf(t, p, "access") != before["access"] {
		t.Error("a new storage name must replace the storage certificate only")
	}
	// Each role's certificate names it and is for client authentication.
	for _, role := range Roles {
		certFile, keyFile := p.Cert(role)
		pair, _ := tls.LoadX509KeyPair(certFile, keyFile)
		c, _ := x509.ParseCertificate(pair.Certificate[0])
		if c.Subject.CommonName != CommonName(role) || len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
			t.Errorf("%s: CN %q usages %v", role, c.Subject.CommonName, c.ExtKeyUsage)
		}
	}
}
