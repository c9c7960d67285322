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
	cmd, lines, text := startDev(t, flags, "MAILFLEET_DEMO_PASSWORD=quick-start-pw")
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
	stopDev(t, cmd, lines)
	// The embedded etcd logged only what matters: not every request of the
	// run above as a slow one.
	etcdLog, err := os.ReadFile(filepath.Join(data, "logs", "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(etcdLog), `"request stats"`); n > 5 {
		t.Fatalf("etcd logged %d requests as slow:\n%.2000s", n, etcdLog)
	}

	// MAILFLEET_DEMO_PASSWORD sets the demo password on every start, and
	// the printed one works.
	cmd, lines, text = startDev(t, flags, "MAILFLEET_DEMO_PASSWORD=second-start-pw")
	if !strings.Contains(text, "second-start-pw") {
		t.Fatalf("second start's welcome text:\n%s", text)
	}
	if got := sh(`curl -sk --user`); !strings.Contains(got, "Subject: hello") {
		t.Fatalf("curl imaps read with the new password:\n%s", got)
	}
	// The admin changes it; the next start (without the variable) does not
	// print the kept password, which no longer works.
	text = strings.ReplaceAll(text, "./bin/mailctl", filepath.Join(binDir, "mailctl"))
	m := regexp.MustCompile(`(?m)^  env \$\(cat (\S+)\) `).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no mailctl command in:\n%s", text)
	}
	passwd := exec.Command("bash", "-c", fmt.Sprintf("echo admin-chosen-pw | env $(cat %s) %s account passwd demo@example.test", m[1], filepath.Join(binDir, "mailctl")))
	if res, err := passwd.CombinedOutput(); err != nil {
		t.Fatalf("mailctl account passwd: %v\n%s", err, res)
	}
	stopDev(t, cmd, lines)
	cmd, lines, text = startDev(t, flags)
	if strings.Contains(text, "second-start-pw") || !strings.Contains(text, "changed with mailctl") {
		t.Fatalf("welcome text after a password change:\n%s", text)
	}
	stopDev(t, cmd, lines)
}

// startDev starts the dev cluster with flags and extra environment, and
// returns it with its welcome text (up to the admin's command).
func startDev(t *testing.T, flags []string, env ...string) (*exec.Cmd, *bufio.Scanner, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "mailfleet-dev"), flags...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
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
	return cmd, lines, welcome.String()
}

// stopDev stops the dev cluster with Ctrl-C and checks it ends cleanly.
func stopDev(t *testing.T, cmd *exec.Cmd, lines *bufio.Scanner) {
	t.Helper()
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
