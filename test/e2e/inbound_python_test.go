package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// python3's smtplib delivers to the MX over STARTTLS; the message is stored
// byte for byte after the added headers, and the Received header says ESMTPS.
func TestInboundWithPythonSmtplib(t *testing.T) {
	c, _ := startMX(t)
	acc := c.CreateAccount("ann@example.test", "pw-ann-secret")
	msg := []byte("From: py@example.org\r\nTo: ann@example.test\r\nSubject: from python\r\n\r\nline\r\n.dot line\r\n")
	file := filepath.Join(t.TempDir(), "msg.eml")
	os.WriteFile(file, msg, 0o600)
	host, port := split(c.Inbound[0].SMTP)
	out, err := exec.Command("python3", "testdata/smtp_inbound.py", host, port, "ann@example.test", file).CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	bodies, _ := inboxBodies(t, c, acc.Id)
	if len(bodies) != 1 {
		t.Fatalf("%d messages stored", len(bodies))
	}
	added, ok := addedHeaders(bodies[0], msg)
	if !ok || !strings.Contains(added, "with ESMTPS id") || !bytes.HasPrefix(bodies[0], []byte("Received: from py.example.org")) {
		t.Fatalf("stored:\n%s", bodies[0])
	}
}
