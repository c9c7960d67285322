package password

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestHashAndVerify(t *testing.T) {
	h, err := Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("unexpected hash format %q", h)
	}
	if strings.Contains(h, "correct horse") {
		t.Fatal("hash contains the password")
	}
	if !Verify(h, "correct horse") {
		t.Fatal("right password refused")
	}
	for _, wrong := range []string{"", "correct hors", "correct horse ", "Correct horse"} {
		if Verify(h, wrong) {
			t.Fatalf("wrong password %q accepted", wrong)
		}
	}
	h2, _ := Hash("correct horse")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
}

func TestVerifyRejectsGarbageAndUnknownUser(t *testing.T) {
	for _, h := range []string{"", "$argon2id$", "$argon2id$v=19$m=0,t=0,p=0$$", "plaintext", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdA$a2V5"} {
		if Verify(h, "x") {
			t.Fatalf("hash %q accepted a password", h)
		}
	}
}

func TestBcryptAccepted(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("imported"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if !Verify(string(h), "imported") || Verify(string(h), "other") {
		t.Fatal("bcrypt hash not checked correctly")
	}
}

func TestHashRejectsEmptyAndHuge(t *testing.T) {
	if _, err := Hash(""); err == nil {
		t.Fatal("empty password hashed")
	}
	if _, err := Hash(strings.Repeat("a", MaxLength+1)); err == nil {
		t.Fatal("oversized password hashed")
	}
}
