// Package devpki makes the internal certificates of a development or test
// cluster: a CA, the storage tier's server certificate and one client
// certificate per tier, so that `make run` and every test harness run with
// mutual TLS between the tiers exactly as the Helm chart does.
//
// The identity contract (the storage tier's authz package checks it): a
// client certificate signed by the internal CA, for client authentication,
// with the Subject CommonName "mailfleet-<role>".
package devpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Roles is every tier identity the storage tier knows.
var Roles = []string{"inbound", "submission", "queue", "access", "admin"}

// CommonName is the Subject CommonName of a role's client certificate.
func CommonName(role string) string { return "mailfleet-" + role }

// validity of what Ensure makes; renewAfter: Ensure replaces certificates
// with less than this left.
const (
	validity   = 365 * 24 * time.Hour
	renewAfter = 30 * 24 * time.Hour
)

// PKI is a directory of PEM files: ca.crt and ca.key, storage.crt and
// storage.key, and <role>.crt and <role>.key for every role.
type PKI struct {
	Dir string
}

// CA is the path of the CA certificate.
func (p *PKI) CA() string { return filepath.Join(p.Dir, "ca.crt") }

// Cert returns the certificate and key paths of name ("storage" or a role).
func (p *PKI) Cert(name string) (cert, key string) {
	return filepath.Join(p.Dir, name+".crt"), filepath.Join(p.Dir, name+".key")
}

// ServerArgs are the storage binary's TLS flags.
func (p *PKI) ServerArgs() []string {
	cert, key := p.Cert("storage")
	return []string{"--grpc-tls-cert", cert, "--grpc-tls-key", key, "--grpc-client-ca", p.CA()}
}

// ClientArgs are a tier's flags for calling storage as role.
func (p *PKI) ClientArgs(role string) []string {
	cert, key := p.Cert(role)
	return []string{"--storage-ca", p.CA(), "--storage-cert", cert, "--storage-key", key}
}

// ClientEnv is the environment that gives mailctl role's identity.
func (p *PKI) ClientEnv(role string) []string {
	cert, key := p.Cert(role)
	return []string{"MAILFLEET_STORAGE_CA=" + p.CA(), "MAILFLEET_STORAGE_CERT=" + cert, "MAILFLEET_STORAGE_KEY=" + key}
}

// ClientTLS is a client tls.Config presenting role's certificate.
func (p *PKI) ClientTLS(role string) (*tls.Config, error) {
	cert, key := p.Cert(role)
	return p.clientTLS(cert, key)
}

func (p *PKI) clientTLS(certFile, keyFile string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(p.CA())
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("devpki: no certificate in " + p.CA())
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Ensure returns the PKI in dir, making whatever is missing, expires within
// 30 days or no longer matches the CA. storageHosts are the names and
// addresses clients dial the storage tier by.
func Ensure(dir string, storageHosts []string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &PKI{Dir: dir}
	ca, caKey, err := p.loadOrMakeCA()
	if err != nil {
		return nil, err
	}
	if _, err := p.ensureLeaf(ca, caKey, "storage", "mailfleet-storage", storageHosts, x509.ExtKeyUsageServerAuth); err != nil {
		return nil, err
	}
	for _, role := range Roles {
		if _, err := p.ensureLeaf(ca, caKey, role, CommonName(role), nil, x509.ExtKeyUsageClientAuth); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Issue writes a client certificate with any CommonName signed by the CA,
// as name.crt and name.key (tests use it for identities the storage tier
// must refuse).
func (p *PKI) Issue(name, commonName string, usage x509.ExtKeyUsage) (cert, key string, err error) {
	ca, caKey, err := p.loadOrMakeCA()
	if err != nil {
		return "", "", err
	}
	if err := p.writeLeaf(ca, caKey, name, commonName, nil, usage); err != nil {
		return "", "", err
	}
	cert, key = p.Cert(name)
	return cert, key, nil
}

// IssueServer writes a server certificate for hosts (names or addresses)
// signed by the CA, as name.crt and name.key (tests use it for the servers
// they stand up: remote MX hosts, MTA-STS policy hosts).
func (p *PKI) IssueServer(name string, hosts ...string) (cert, key string, err error) {
	ca, caKey, err := p.loadOrMakeCA()
	if err != nil {
		return "", "", err
	}
	if err := p.writeLeaf(ca, caKey, name, hosts[0], hosts, x509.ExtKeyUsageServerAuth); err != nil {
		return "", "", err
	}
	cert, key = p.Cert(name)
	return cert, key, nil
}

func (p *PKI) loadOrMakeCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certFile, keyFile := p.Cert("ca")
	if ca, key, err := loadPair(certFile, keyFile); err == nil && time.Until(ca.NotAfter) > renewAfter {
		return ca, key, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "mailfleet internal CA (development)"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * validity),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePair(certFile, keyFile, der, key); err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

// ensureLeaf keeps a valid leaf signed by ca, or writes a new one.
func (p *PKI) ensureLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, name, cn string, hosts []string, usage x509.ExtKeyUsage) (bool, error) {
	certFile, keyFile := p.Cert(name)
	if cert, _, err := loadPair(certFile, keyFile); err == nil && time.Until(cert.NotAfter) > renewAfter &&
		cert.CheckSignatureFrom(ca) == nil && cert.Subject.CommonName == cn && coversHosts(cert, hosts) {
		return false, nil
	}
	return true, p.writeLeaf(ca, caKey, name, cn, hosts, usage)
}

func (p *PKI) writeLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, name, cn string, hosts []string, usage x509.ExtKeyUsage) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	certFile, keyFile := p.Cert(name)
	return writePair(certFile, keyFile, der, key)
}

func coversHosts(cert *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if cert.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func loadPair(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("devpki: %s is not an ECDSA key", keyFile)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	return cert, key, err
}

// writePair writes a certificate and its key; the key readable by the
// owner only. Each file is replaced atomically (a reloading reader never
// sees half a file).
func writePair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
