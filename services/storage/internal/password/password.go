// Package password hashes and checks account passwords with argon2id (RFC 9106),
// stored as PHC strings. bcrypt hashes are accepted too, for imported accounts.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Parameters follow OWASP's argon2id recommendation (19 MiB, 2 passes, 1 lane):
// about 30 ms on one core of this project's reference machine.
const (
	memoryKiB = 19 * 1024
	passes    = 2
	lanes     = 1
	saltLen   = 16
	keyLen    = 32
)

// MaxLength bounds what we are willing to hash.
const MaxLength = 1024

var b64 = base64.RawStdEncoding

// Hash returns the PHC string of password.
func Hash(password string) (string, error) {
	if len(password) == 0 || len(password) > MaxLength {
		return "", errors.New("password must be 1 to 1024 bytes")
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, passes, memoryKiB, lanes, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, memoryKiB, passes, lanes, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// dummyHash is checked against when the user does not exist, so that a wrong
// username costs the same time as a wrong password.
var dummyHash, _ = Hash("mailfleet-dummy-password")

// checks counts hash computations, and verifyHook runs in each: for tests.
var (
	checks     atomic.Int64
	verifyHook func()
)

// Verify reports whether password matches hash. An empty hash (unknown user)
// still spends the time of a real check.
func Verify(hash, password string) bool {
	checks.Add(1)
	if verifyHook != nil {
		verifyHook()
	}
	if hash == "" {
		verifyArgon2(dummyHash, password)
		return false
	}
	if len(password) > MaxLength {
		return false
	}
	if strings.HasPrefix(hash, "$2") {
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
	}
	return verifyArgon2(hash, password)
}

func verifyArgon2(hash, password string) bool {
	// $argon2id$v=19$m=19456,t=2,p=1$salt$key
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || m > 1<<20 || t == 0 || t > 16 || p == 0 {
		return false
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}
