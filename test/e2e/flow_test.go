package e2e

// The mail-flow scenarios of the project (issue "one command… one e2e
// suite"). They use only public protocols and mailctl, against a local
// multi-process cluster, or, when MAILFLEET_E2E_IMAPS is set, against an
// external deployment:
//
//	MAILFLEET_E2E_IMAPS, MAILFLEET_E2E_IMAPS2   two IMAPS endpoints (two access pods, or the same Service twice)
//	MAILFLEET_E2E_POP3S                         POP3S endpoint
//	MAILFLEET_E2E_SMTP                          the MX (inbound)
//	MAILFLEET_E2E_SUBMISSION                    submission with STARTTLS
//	MAILFLEET_E2E_STORAGE                       storage gRPC, for mailctl (e.g. a port-forward)
//	MAILFLEET_STORAGE_CA/_CERT/_KEY             the admin identity mailctl uses
//	MAILFLEET_E2E_PKI                           the tiers' identities (pkg/devpki layout) for scenario 7
//	MAILFLEET_E2E_CHURN                         shell command run during scenario 5 (scale, upgrade);
//	                                            unset: scenario 5 is not run
//
// Against an external deployment scenario 2 (it needs a fake remote MX) is
// not run; the test log says so.

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/pkg/devpki"
	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/dnstest"
	"github.com/mailfleet/mailfleet/test/fakemx"
)

// flowTarget is where the scenarios run.
type flowTarget struct {
	imaps, imaps2, pop3s, smtp, submission, storage string
	local                                           *cluster.Cluster
	dns                                             *dnstest.Server
	remote                                          *fakemx.Server
}

func newFlowTarget(t *testing.T) *flowTarget {
	if ext := os.Getenv("MAILFLEET_E2E_IMAPS"); ext != "" {
		return &flowTarget{imaps: ext, imaps2: os.Getenv("MAILFLEET_E2E_IMAPS2"), pop3s: os.Getenv("MAILFLEET_E2E_POP3S"),
			smtp: os.Getenv("MAILFLEET_E2E_SMTP"), submission: os.Getenv("MAILFLEET_E2E_SUBMISSION"), storage: os.Getenv("MAILFLEET_E2E_STORAGE")}
	}
	dns, remote, remotePort := startRemoteMX(t)
	dns.TXT("example.org", "v=spf1 ip4:127.0.0.1 -all")
	c := cluster.Start(t, binDir, minioServer, cluster.Options{EtcdMembers: 3, Storage: 2, Access: 2, Inbound: 1, Submission: 1, DNS: dns.Addr,
		SubmissionArgs: []string{"--remote-port", remotePort, "--retry-schedule", "1s"}, InboundArgs: []string{"--max-conns-per-ip", "200"}})
	return &flowTarget{imaps: c.Access[0].IMAPS, imaps2: c.Access[1].IMAPS, pop3s: c.Access[1].POP3S, smtp: c.Inbound[0].SMTP,
		submission: c.Submission[0].Submission, storage: c.Storage[0].Addr, local: c, dns: dns, remote: remote}
}

// pki is the target's internal identities: the local cluster's, or those
// the e2e-k8s script exported from the chart's Secrets (MAILFLEET_E2E_PKI).
func (tg *flowTarget) pki() *devpki.PKI {
	if tg.local != nil {
		return tg.local.PKI
	}
	if dir := os.Getenv("MAILFLEET_E2E_PKI"); dir != "" {
		return &devpki.PKI{Dir: dir}
	}
	return nil
}

// mailctl runs the admin CLI against the target.
func (tg *flowTarget) mailctl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := mailctlCommand(tg.local, tg.storage, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mailctl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// account makes a fresh account through mailctl.
func (tg *flowTarget) account(t *testing.T, name string) (address, password string) {
	t.Helper()
	address = fmt.Sprintf("%s-%d@example.test", name, time.Now().UnixNano()%1000000)
	password = "pw-" + address
	tg.mailctl(t, password+"\n", "account", "create", address)
	return address, password
}

func TestMailFlow(t *testing.T) {
	tg := newFlowTarget(t)
	if out, _ := mailctlCommand(tg.local, tg.storage, "domain", "list").Output(); !strings.Contains(string(out), "example.test") {
		tg.mailctl(t, "", "domain", "create", "example.test")
	}
	t.Run("1-inbound-to-imap-and-pop3", func(t *testing.T) { flowInboundToReaders(t, tg) })
	t.Run("3-changes-cross-pods", func(t *testing.T) { flowAcrossPods(t, tg) })
	t.Run("4-quota", func(t *testing.T) { flowQuota(t, tg) })
	t.Run("6-isolation-and-abuse", func(t *testing.T) { flowAbuse(t, tg) })
	t.Run("7-storage-refuses-strangers", func(t *testing.T) { assertStorageRefusesStrangers(t, tg.storage, tg.pki()) })
	if tg.local == nil {
		if os.Getenv("MAILFLEET_E2E_CHURN") != "" {
			t.Run("5-restarts-under-load", func(t *testing.T) { flowRestarts(t, tg) })
		} else {
			t.Log("external target without MAILFLEET_E2E_CHURN: scenario 5 (restarts under load) not run")
		}
		t.Log("external target: scenario 2 needs the fake remote MX and runs only locally")
		return
	}
	t.Run("2-submission-local-and-remote", func(t *testing.T) { flowSubmission(t, tg) })
	t.Run("5-restarts-under-load", func(t *testing.T) { flowRestarts(t, tg) })
}
