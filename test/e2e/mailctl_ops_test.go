package e2e

import (
	"strings"
	"testing"

	"github.com/mailfleet/mailfleet/test/cluster"
)

// mailctl bootstrap (the chart's setup Job) is idempotent, and mailctl
// selftest (the chart's helm test) proves the MX → IMAP flow.
func TestMailctlBootstrapAndSelftest(t *testing.T) {
	dns, _ := startDNS(t)
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1, Inbound: 1, DNS: dns.Addr})
	run := func(env []string, args ...string) string {
		t.Helper()
		cmd := mailctlCommand(c, c.Storage[0].Addr, args...)
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mailctl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	env := []string{"MAILFLEET_ADMIN_PASSWORD=admin-secret-pw"}
	out := run(env, "bootstrap", "--domain", "corp.test", "--domain", "corp2.test", "--admin", "postmaster@corp.test")
	if !strings.Contains(out, "domain corp.test created") || !strings.Contains(out, "account postmaster@corp.test created") {
		t.Fatalf("first bootstrap:\n%s", out)
	}
	out = run(env, "bootstrap", "--domain", "corp.test", "--admin", "postmaster@corp.test")
	if !strings.Contains(out, "domain corp.test exists") || !strings.Contains(out, "account postmaster@corp.test exists") {
		t.Fatalf("second bootstrap:\n%s", out)
	}
	out = run(nil, "selftest", "--smtp", c.Inbound[0].SMTP, "--imaps", c.Access[0].IMAPS, "--domain", "corp.test")
	if !strings.Contains(out, "read it back over IMAPS") {
		t.Fatalf("selftest:\n%s", out)
	}
	if list := run(nil, "account", "list", "corp.test"); strings.Contains(list, "selftest-") {
		t.Fatalf("selftest left its account behind:\n%s", list)
	}
}
