package service

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"regexp"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

var selectorRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// GenerateDKIMKey makes a new key pair for a local domain. The private key
// stays in etcd; the submission tier fetches it to sign.
func (s *Server) GenerateDKIMKey(ctx context.Context, req *storagev1.GenerateDKIMKeyRequest) (*storagev1.GenerateDKIMKeyResponse, error) {
	domain, err := normalizeDomain(req.Domain)
	if err != nil {
		return nil, err
	}
	selector := req.Selector
	if selector == "" {
		selector = "mf"
	}
	if !selectorRE.MatchString(selector) {
		return nil, errInvalid("invalid selector %q", selector)
	}
	if ok, err := s.domainExists(ctx, domain); err != nil {
		return nil, toStatus(err)
	} else if !ok {
		return nil, fail(reasonDomainNotFound, "domain %s is not local", domain)
	}
	algo := req.Algorithm
	if algo == "" {
		algo = "rsa"
	}
	var priv crypto.Signer
	var pubDER []byte
	var keyType string
	switch algo {
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, toStatus(err)
		}
		priv, keyType = k, "rsa"
		if pubDER, err = x509.MarshalPKIXPublicKey(&k.PublicKey); err != nil {
			return nil, toStatus(err)
		}
	case "ed25519":
		pub, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, toStatus(err)
		}
		priv, keyType, pubDER = k, "ed25519", pub // RFC 8463: the raw key
	default:
		return nil, errInvalid("algorithm must be rsa or ed25519")
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, toStatus(err)
	}
	key := &storagev1.DKIMKey{
		Domain: domain, Selector: selector, Algorithm: algo,
		PrivateKeyPem: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		DnsName:       selector + "._domainkey." + domain,
		DnsValue:      "v=DKIM1; k=" + keyType + "; p=" + base64.StdEncoding.EncodeToString(pubDER),
	}
	if _, err := s.etcd.Put(ctx, s.keys.DKIM(domain), string(marshal(key))); err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("DKIM key generated", "domain", domain, "selector", selector, "algorithm", algo)
	public := proto.Clone(key).(*storagev1.DKIMKey)
	public.PrivateKeyPem = ""
	return &storagev1.GenerateDKIMKeyResponse{Key: public}, nil
}

func (s *Server) GetDKIMKey(ctx context.Context, req *storagev1.GetDKIMKeyRequest) (*storagev1.GetDKIMKeyResponse, error) {
	domain, err := normalizeDomain(req.Domain)
	if err != nil {
		return nil, err
	}
	resp, err := s.etcd.Get(ctx, s.keys.DKIM(domain))
	if err != nil {
		return nil, toStatus(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fail(reasonDomainNotFound, "no DKIM key for %s", domain)
	}
	key := &storagev1.DKIMKey{}
	if err := proto.Unmarshal(resp.Kvs[0].Value, key); err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.GetDKIMKeyResponse{Key: key}, nil
}
