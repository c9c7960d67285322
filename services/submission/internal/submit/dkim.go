package submit

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailfleet/mailfleet/pkg/storeclient"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// keyCache keeps each domain's DKIM key (or its absence) for a while.
type keyCache struct {
	store *storeclient.Client
	ttl   time.Duration

	mu      sync.Mutex
	entries map[string]cachedKey
}

type cachedKey struct {
	selector string
	signer   crypto.Signer // nil: the domain has no key
	expires  time.Time
}

func newKeyCache(store *storeclient.Client, ttl time.Duration) *keyCache {
	return &keyCache{store: store, ttl: ttl, entries: map[string]cachedKey{}}
}

func (c *keyCache) get(ctx context.Context, domain string) (cachedKey, error) {
	c.mu.Lock()
	k, ok := c.entries[domain]
	c.mu.Unlock()
	if ok && time.Now().Before(k.expires) {
		return k, nil
	}
	resp, err := c.store.Accounts.GetDKIMKey(ctx, &storagev1.GetDKIMKeyRequest{Domain: domain})
	k = cachedKey{expires: time.Now().Add(c.ttl)}
	switch {
	case storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_DOMAIN_NOT_FOUND:
		// No key: mail goes out unsigned.
	case err != nil:
		return k, err
	default:
		block, _ := pem.Decode([]byte(resp.Key.PrivateKeyPem))
		if block == nil {
			return k, errors.New("DKIM key is not PEM")
		}
		priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return k, err
		}
		signer, ok := priv.(crypto.Signer)
		if !ok {
			return k, errors.New("DKIM key cannot sign")
		}
		k.selector, k.signer = resp.Key.Selector, signer
	}
	c.mu.Lock()
	c.entries[domain] = k
	c.mu.Unlock()
	return k, nil
}

// signedHeaders are the fields DKIM signs (RFC 6376 5.4.1's recommendation).
var signedHeaders = []string{"From", "Reply-To", "Subject", "Date", "To", "Cc", "Resent-Date", "Resent-From",
	"Resent-To", "Resent-Cc", "In-Reply-To", "References", "List-Id", "List-Help", "List-Unsubscribe",
	"List-Subscribe", "List-Post", "List-Owner", "List-Archive", "Message-ID", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding"}

// sign returns the DKIM-Signature field for msg by domain's key ("" when the
// domain has no key).
func (c *keyCache) sign(ctx context.Context, domain string, msg io.Reader) (string, error) {
	k, err := c.get(ctx, domain)
	if err != nil || k.signer == nil {
		return "", err
	}
	signer, err := dkim.NewSigner(&dkim.SignOptions{Domain: domain, Selector: k.selector, Signer: k.signer, HeaderKeys: signedHeaders})
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(signer, msg); err != nil {
		signer.Close()
		return "", err
	}
	if err := signer.Close(); err != nil {
		return "", err
	}
	return signer.Signature(), nil
}
