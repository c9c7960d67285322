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

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
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
	// One transaction: a domain's signing key is only ever replaced on
	// purpose (rotate), and then the one it replaces is kept.
	var retired *storagev1.DKIMKey
	_, err = etcdtx.Run(ctx, s.etcd, func(tx *etcdtx.Tx) error {
		retired = nil
		raw, ok, err := tx.Get(s.keys.DKIM(domain))
		if err != nil {
			return err
		}
		if ok {
			old := &storagev1.DKIMKey{}
			if err := proto.Unmarshal(raw, old); err != nil {
				return err
			}
			switch {
			case !req.Rotate:
				return fail(reasonAddressExists, "%s already has a DKIM key (selector %s); rotate to replace it", domain, old.Selector)
			case old.Selector == selector:
				return errInvalid("rotating needs a new selector (%s is the current one)", selector)
			}
			old.Retired = true
			tx.Put(s.keys.RetiredDKIM(domain, old.Selector), marshal(old))
			retired = old
		}
		if _, taken, err := tx.Get(s.keys.RetiredDKIM(domain, selector)); err != nil {
			return err
		} else if taken {
			return errInvalid("selector %s was used by a retired key of %s; choose another", selector, domain)
		}
		tx.Put(s.keys.DKIM(domain), marshal(key))
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("DKIM key generated", "domain", domain, "selector", selector, "algorithm", algo, "rotated", retired != nil)
	resp := &storagev1.GenerateDKIMKeyResponse{Key: publicKey(key)}
	if retired != nil {
		resp.Retired = publicKey(retired)
	}
	return resp, nil
}

// publicKey is key without its private part.
func publicKey(key *storagev1.DKIMKey) *storagev1.DKIMKey {
	public := proto.Clone(key).(*storagev1.DKIMKey)
	public.PrivateKeyPem = ""
	return public
}

// ListDKIMKeys returns a domain's keys, the signing one first, none with
// its private part.
func (s *Server) ListDKIMKeys(ctx context.Context, req *storagev1.ListDKIMKeysRequest) (*storagev1.ListDKIMKeysResponse, error) {
	domain, err := normalizeDomain(req.Domain)
	if err != nil {
		return nil, err
	}
	resp, err := s.etcd.Txn(ctx).Then(clientv3.OpGet(s.keys.DKIM(domain)),
		clientv3.OpGet(s.keys.RetiredDKIM(domain, ""), clientv3.WithPrefix())).Commit()
	if err != nil {
		return nil, toStatus(err)
	}
	out := &storagev1.ListDKIMKeysResponse{}
	for _, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().Kvs {
			key := &storagev1.DKIMKey{}
			if err := proto.Unmarshal(kv.Value, key); err != nil {
				return nil, toStatus(err)
			}
			out.Keys = append(out.Keys, publicKey(key))
		}
	}
	if len(out.Keys) == 0 {
		return nil, fail(reasonDomainNotFound, "no DKIM key for %s", domain)
	}
	return out, nil
}

// RemoveDKIMKey removes a retired key: its DNS record may go too.
func (s *Server) RemoveDKIMKey(ctx context.Context, req *storagev1.RemoveDKIMKeyRequest) (*storagev1.RemoveDKIMKeyResponse, error) {
	domain, err := normalizeDomain(req.Domain)
	if err != nil {
		return nil, err
	}
	resp, err := s.etcd.Delete(ctx, s.keys.RetiredDKIM(domain, req.Selector))
	if err != nil {
		return nil, toStatus(err)
	}
	if resp.Deleted == 0 {
		return nil, fail(reasonDomainNotFound, "%s has no retired DKIM key with selector %q (the signing key is never removed: rotate first)", domain, req.Selector)
	}
	s.log.Info("retired DKIM key removed", "domain", domain, "selector", req.Selector)
	return &storagev1.RemoveDKIMKeyResponse{}, nil
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
