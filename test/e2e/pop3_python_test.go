package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// python3's poplib, an independent implementation, runs a scripted session
// over STLS and implicit TLS and gets byte-identical messages.
func TestPOP3WithPythonPoplib(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("py@example.test", "py-secret")
	bodies := [][]byte{
		message(1),
		[]byte("Subject: bare LF\n\nline one\nline two\n"),
		append([]byte("Subject: big\r\n\r\n"), bytes.Repeat([]byte("0123456789abcdefghij\r\n"), 20000)...),
	}
	for _, b := range bodies {
		c.Deliver([]string{"py@example.test"}, b)
	}
	out := t.TempDir()
	a := c.Access[0]
	host, stlsPort := split(a.POP3)
	_, tlsPort := split(a.POP3S)
	cmd := exec.Command("python3", "testdata/pop3_session.py", host, stlsPort, tlsPort, "py@example.test", "py-secret", out)
	log, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("poplib session failed: %v\n%s", err, log)
	}
	if !strings.Contains(string(log), "STAT 3 ") || !strings.Contains(string(log), "AFTER 2") {
		t.Fatalf("unexpected poplib transcript:\n%s", log)
	}
	for i, want := range bodies {
		got, err := os.ReadFile(filepath.Join(out, []string{"1", "2", "3"}[i]+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		// POP3 serves CRLF line endings: the bare-LF message comes back with CRLF.
		want = bytes.ReplaceAll(bytes.ReplaceAll(want, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		if !bytes.Equal(got, want) {
			t.Fatalf("message %d differs: got %d bytes, want %d", i+1, len(got), len(want))
		}
	}
}

func split(addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}
