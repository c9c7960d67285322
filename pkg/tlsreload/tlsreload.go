// Package tlsreload serves a TLS certificate from files (a Kubernetes Secret
// mount) and picks up a renewed one without a restart: at most once per
// CheckInterval, a handshake looks at the files' modification times and
// reloads them if they changed. A broken renewal keeps the old certificate.
package tlsreload

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// CheckInterval bounds how often the files are looked at.
const CheckInterval = time.Second

// Reloader holds the current certificate.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	certMod   time.Time
	keyMod    time.Time
	lastCheck time.Time
}

// New loads the certificate once; it fails if the files are not a valid pair.
func New(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func modTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

func (r *Reloader) load() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert, r.certMod, r.keyMod = &cert, modTime(r.certFile), modTime(r.keyFile)
	return nil
}

// GetCertificate is tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.lastCheck) >= CheckInterval {
		r.lastCheck = time.Now()
		if !modTime(r.certFile).Equal(r.certMod) || !modTime(r.keyFile).Equal(r.keyMod) {
			if err := r.load(); err != nil {
				r.log.Warn("TLS certificate changed but does not load; keeping the old one", "cert", r.certFile, "err", err)
			} else {
				r.log.Info("TLS certificate reloaded", "cert", r.certFile)
			}
		}
	}
	return r.cert, nil
}

// Config returns a server tls.Config using the reloader (TLS 1.2 at least).
func (r *Reloader) Config() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// SelfSigned writes a self-signed certificate for hosts into dir (cert.pem,
// key.pem) unless one is there already, and returns the paths. For
// development only: production certificates come from files.
func SelfSigned(dir string, hosts []string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		return certFile, keyFile, nil
	}
	if len(hosts) == 0 {
		return "", "", errors.New("tlsreload: no host names")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"Mailfleet development"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// FromFlags is the TLS setup every frontend shares: certificate files
// (reloaded on change), else a self-signed development certificate in devDir,
// else nil (no TLS).
func FromFlags(certFile, keyFile, devDir string, log *slog.Logger) (*tls.Config, error) {
	if certFile == "" && devDir != "" {
		var err error
		if certFile, keyFile, err = SelfSigned(devDir, []string{"localhost", "127.0.0.1"}); err != nil {
			return nil, err
		}
		log.Warn("using a self-signed development certificate", "cert", certFile)
	}
	if certFile == "" {
		return nil, nil
	}
	r, err := New(certFile, keyFile, log)
	if err != nil {
		return nil, err
	}
	return r.Config(), nil
}

// MutualClient is a client config that verifies the server against caFile
// and presents the certificate in certFile/keyFile; both files are reloaded
// when they change, so a renewed certificate or a rotated CA needs no
// restart.
func MutualClient(caFile, certFile, keyFile string, log *slog.Logger) (*tls.Config, error) {
	pool, err := NewPool(caFile, log)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The standard check reads a fixed RootCAs; VerifyConnection does
		// the same check (chain to the CA, name of the server) against the
		// current pool.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs, pool.Get())
		},
	}
	if certFile != "" {
		r, err := New(certFile, keyFile, log)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return r.GetCertificate(nil) }
	}
	return cfg, nil
}

// verifyServer is what crypto/tls checks of a server by default: its chain
// leads to a root in pool, and its certificate names the server dialled.
func verifyServer(cs tls.ConnectionState, pool *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tlsreload: the server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: inter, DNSName: cs.ServerName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

func loadPool(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("tlsreload: no certificate in " + caFile)
	}
	return pool, nil
}

// Pool is a CA bundle read from a file and re-read when the file changes
// (at most once per CheckInterval): a rotated internal CA is picked up
// without a restart.
type Pool struct {
	file string
	log  *slog.Logger

	mu        sync.Mutex
	pool      *x509.CertPool
	mod       time.Time
	lastCheck time.Time
}

// NewPool loads the CA bundle once; it fails if the file holds no certificate.
func NewPool(caFile string, log *slog.Logger) (*Pool, error) {
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, err
	}
	return &Pool{file: caFile, log: log, pool: pool, mod: modTime(caFile), lastCheck: time.Now()}, nil
}

// Get returns the current pool.
func (p *Pool) Get() *x509.CertPool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.lastCheck) >= CheckInterval {
		p.lastCheck = time.Now()
		if mod := modTime(p.file); !mod.Equal(p.mod) {
			if pool, err := loadPool(p.file); err != nil {
				p.log.Warn("CA bundle changed but does not load; keeping the old one", "ca", p.file, "err", err)
			} else {
				p.pool, p.mod = pool, mod
				p.log.Info("CA bundle reloaded", "ca", p.file)
			}
		}
	}
	return p.pool
}
