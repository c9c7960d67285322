package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// python3's imaplib, an independent implementation, runs CAPABILITY,
// STARTTLS, LOGIN, LIST, SELECT, SEARCH, FETCH, STORE, EXPUNGE and gets the
// delivered bytes back exactly.
func TestIMAPWithPythonImaplib(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("py@example.test", "py-secret")
	want := []byte("From: a@example.org\r\nSubject: hello python\r\n\r\nbody with \xc3\xa9 and\r\n.a dot line\r\n")
	c.Deliver([]string{"py@example.test"}, message(1))
	c.Deliver([]string{"py@example.test"}, want)
	host, port := split(c.Access[0].IMAP)
	out := filepath.Join(t.TempDir(), "msg.eml")
	log, err := exec.Command("python3", "testdata/imap_session.py", host, port, "py@example.test", "py-secret", out).CombinedOutput()
	if err != nil {
		t.Fatalf("imaplib session failed: %v\n%s", err, log)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("imaplib fetched %q, want %q", got, want)
	}
}
