package integration

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// mailctl runs the built admin CLI against a replica.
func mailctl(t *testing.T, r *replica, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "mailctl"), args...)
	cmd.Env = append(append(cmd.Environ(), "MAILFLEET_STORAGE="+r.addr), pki.ClientEnv("admin")...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestMailctlEndToEnd(t *testing.T) {
	c := newCluster(t, options{driver: "fs"})
	r := c.replicas[0]
	ctx := ctxT(t)
	run := func(stdin string, args ...string) string {
		t.Helper()
		out, err := mailctl(t, r, stdin, args...)
		if err != nil {
			t.Fatalf("mailctl %v: %v\n%s", args, err, out)
		}
		return out
	}
	run("", "domain", "create", "corp.test")
	if out := run("", "domain", "list"); strings.TrimSpace(out) != "corp.test" {
		t.Fatalf("domain list: %q", out)
	}
	run("first secret\n", "account", "create", "ann@corp.test", "--quota-bytes", "1000000")
	auth := func(pw string) error {
		_, err := r.Accounts.Authenticate(ctx, &storagev1.AuthenticateRequest{Username: "Ann@corp.test", Password: pw})
		return err
	}
	if err := auth("first secret"); err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	if err := auth("wrong"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong password: %v, want Unauthenticated", err)
	}
	run("second secret", "account", "passwd", "ann@corp.test")
	if err := auth("first secret"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("old password still works: %v", err)
	}
	if err := auth("second secret"); err != nil {
		t.Fatalf("new password refused: %v", err)
	}
	run("", "alias", "add", "sales@corp.test", "ann@corp.test")
	run("", "account", "quota", "ann@corp.test", "5M", "100")
	out := run("", "account", "list", "corp.test")
	if !strings.Contains(out, "ann@corp.test") || !strings.Contains(out, "5242880") || !strings.Contains(out, "sales@corp.test") ||
		!strings.Contains(out, "MESSAGE QUOTA") || !strings.Contains(out, " 100 ") {
		t.Fatalf("account list: %q", out)
	}
	// Errors are clear and exit non-zero; the password never shows.
	if out, err := mailctl(t, r, "", "account", "create", "bob@corp.test"); err == nil || !strings.Contains(out, "password") {
		t.Fatalf("account create without a password: %v %q", err, out)
	}
	if out, err := mailctl(t, r, "bobs own secret\n", "account", "create", "bob@nowhere.test"); err == nil || !strings.Contains(out, "not local") {
		t.Fatalf("account in an unknown domain: %v %q", err, out)
	}
	// A minimum length (--min-password-length, 8 by default), for new
	// accounts and password changes alike.
	if out, err := mailctl(t, r, "short\n", "account", "create", "bob@corp.test"); err == nil || !strings.Contains(out, "at least 8") {
		t.Fatalf("a 5-character password: %v %q", err, out)
	}
	if out, err := mailctl(t, r, "short\n", "account", "passwd", "ann@corp.test"); err == nil || !strings.Contains(out, "at least 8") {
		t.Fatalf("a 5-character new password: %v %q", err, out)
	}
	// Help is asked for, not an error: usage on stdout, exit 0.
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		cmd := exec.Command(filepath.Join(binDir, "mailctl"), args...)
		out, err := cmd.Output()
		if err != nil || !strings.HasPrefix(string(out), "mailctl administers Mailfleet") {
			t.Fatalf("mailctl %v: %v %q", args, err, out)
		}
	}
	// Listings as JSON for scripts, with both quotas.
	var accounts []struct {
		Address string `json:"address"`
		Quota   struct {
			LimitBytes    string `json:"limit_bytes"`
			LimitMessages string `json:"limit_messages"`
		} `json:"quota"`
		Aliases []string `json:"aliases"`
	}
	if err := json.Unmarshal([]byte(run("", "-o", "json", "account", "list", "corp.test")), &accounts); err != nil {
		t.Fatalf("account list -o json: %v", err)
	}
	if len(accounts) != 1 || accounts[0].Address != "ann@corp.test" || accounts[0].Quota.LimitBytes != "5242880" ||
		accounts[0].Quota.LimitMessages != "100" || len(accounts[0].Aliases) != 1 {
		t.Fatalf("account list -o json: %+v", accounts)
	}
	var domains []struct{ Name string }
	if err := json.Unmarshal([]byte(run("", "-o", "json", "domain", "list")), &domains); err != nil || len(domains) != 1 || domains[0].Name != "corp.test" {
		t.Fatalf("domain list -o json: %+v %v", domains, err)
	}
	if out, err := mailctl(t, r, "", "domain", "delete", "corp.test"); err == nil || !strings.Contains(out, "addresses") {
		t.Fatalf("deleting a domain in use: %v %q", err, out)
	}
	// DKIM: a second generate does not replace the key; --rotate does, under
	// a new selector, and keeps the old key (retired) until it is removed.
	if out := run("", "dkim", "generate", "corp.test", "--algorithm", "ed25519"); !strings.Contains(out, "mf._domainkey.corp.test. IN TXT") {
		t.Fatalf("dkim generate: %q", out)
	}
	signing := func() string {
		t.Helper()
		k, err := r.Accounts.GetDKIMKey(ctx, &storagev1.GetDKIMKeyRequest{Domain: "corp.test"})
		if err != nil {
			t.Fatal(err)
		}
		return k.Key.Selector + " " + k.Key.DnsValue
	}
	first := signing()
	if out, err := mailctl(t, r, "", "dkim", "generate", "corp.test"); err == nil || !strings.Contains(out, "rotate") || signing() != first {
		t.Fatalf("dkim generate over an existing key: %v %q", err, out)
	}
	if out, err := mailctl(t, r, "", "dkim", "generate", "corp.test", "--rotate", "--selector", "mf"); err == nil || !strings.Contains(out, "new selector") {
		t.Fatalf("dkim rotate to the same selector: %v %q", err, out)
	}
	if out := run("", "dkim", "generate", "corp.test", "--rotate", "--selector", "mf2", "--algorithm", "ed25519"); !strings.Contains(out, "mf2._domainkey.corp.test. IN TXT") ||
		!strings.Contains(out, "mailctl dkim remove corp.test mf") {
		t.Fatalf("dkim rotate: %q", out)
	}
	if got := signing(); !strings.HasPrefix(got, "mf2 ") {
		t.Fatalf("after rotating, the signing key is %q", got)
	}
	var keys []struct {
		Selector string
		Retired  bool
		DNSValue string `json:"dns_value"`
	}
	if err := json.Unmarshal([]byte(run("", "-o", "json", "dkim", "show", "corp.test")), &keys); err != nil || len(keys) != 2 ||
		keys[0].Selector != "mf2" || keys[0].Retired || keys[1].Selector != "mf" || !keys[1].Retired || "mf "+keys[1].DNSValue != first {
		t.Fatalf("dkim show -o json after rotating: %+v %v", keys, err)
	}
	if out, err := mailctl(t, r, "", "dkim", "remove", "corp.test", "mf2"); err == nil || !strings.Contains(out, "never removed") {
		t.Fatalf("dkim remove of the signing key: %v %q", err, out)
	}
	run("", "dkim", "remove", "corp.test", "mf")
	if out := run("", "dkim", "show", "corp.test"); strings.Contains(out, "retired") || !strings.Contains(out, "mf2 (signing") {
		t.Fatalf("dkim show after removing the retired key: %q", out)
	}

	run("", "account", "delete", "ann@corp.test")
	if err := auth("second secret"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("deleted account can log in: %v", err)
	}
	run("", "domain", "delete", "corp.test")
	logs, _ := exec.Command("cat", r.log).Output()
	if strings.Contains(string(logs), "second secret") || strings.Contains(string(logs), "first secret") {
		t.Fatal("a password appears in the storage log")
	}
}
