package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/pkg/devpki"
	"github.com/mailfleet/mailfleet/pkg/testport"
)

// The README's quick start, verbatim but on free ports: `make run` (the dev
// cluster), a first mail with curl to the MX, read back with curl imaps://
// and python3's poplib, and a clean stop with Ctrl-C.
func TestQuickStart(t *testing.T) {
	data := t.TempDir()
	flags := []string{"--data", data, "--bin", binDir}
	port := map[string]int{}
	for _, name := range []string{"etcd-port", "etcd-peer-port", "storage-port", "storage-ops-port", "imap-port", "imaps-port",
		"pop3-port", "pop3s-port", "access-ops-port", "smtp-port", "inbound-ops-port", "submission-port", "submissions-port", "submission-ops-port"} {
		p, err := testport.Free()
		if err != nil {
			t.Fatal(err)
		}
		port[name] = p
		flags = append(flags, fmt.Sprintf("--%s=%d", name, p))
	}
	cmd := exec.Command(filepath.Join(binDir, "mailfleet-dev"), flags...)
	cmd.Env = append(os.Environ(), "MAILFLEET_DEMO_PASSWORD=quick-start-pw")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// Read the welcome text up to the admin's command.
	var welcome strings.Builder
	lines := bufio.NewScanner(out)
	deadline := time.AfterFunc(90*time.Second, func() { cmd.Process.Kill() })
	for lines.Scan() {
		welcome.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "mailctl account list") {
			break
		}
	}
	deadline.Stop()
	text := welcome.String()
	if !strings.Contains(text, "demo@example.test") || !strings.Contains(text, "quick-start-pw") {
		t.Fatalf("welcome text:\n%s", text)
	}
	// Run the printed commands for curl and python, as a newcomer would.
	sh := func(re string) string {
		t.Helper()
		m := regexp.MustCompile(`(?m)^  (` + re + `.*)$`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no command matching %q in:\n%s", re, text)
		}
		res, err := exec.Command("bash", "-c", m[1]).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", m[1], err, res)
		}
		return string(res)
	}
	sh(`printf .*curl -s smtp://`)
	if got := sh(`curl -sk --user`); !strings.Contains(got, "Subject: hello") || !strings.Contains(got, "Hi!") {
		t.Fatalf("curl imaps read:\n%s", got)
	}
	if got := sh(`python3 -c "import poplib`); !strings.Contains(got, "Hi!") {
		t.Fatalf("poplib read:\n%s", got)
	}
	// The admin command works as printed (the admin certificate from the
	// data directory), with ./bin/mailctl being the one built for the test.
	text = strings.ReplaceAll(text, "./bin/mailctl", filepath.Join(binDir, "mailctl"))
	if got := sh(`env \$\(cat `); !strings.Contains(got, "demo@example.test") {
		t.Fatalf("mailctl account list:\n%s", got)
	}
	// The storage API of `make run` refuses a caller without a tier
	// certificate on every method, and a tier outside its role.
	storage := fmt.Sprintf("127.0.0.1:%d", port["storage-port"])
	pki := &devpki.PKI{Dir: filepath.Join(data, "internal-tls")}
	assertStorageRefusesStrangers(t, storage, pki)
	// Ctrl-C stops everything cleanly.
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() {
		for lines.Scan() {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mailfleet-dev exited with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("mailfleet-dev did not stop after Ctrl-C")
	}
}
