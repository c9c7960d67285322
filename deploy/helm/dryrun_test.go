package helm

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailfleet/mailfleet/pkg/testport"
	"sigs.k8s.io/yaml"
)

func freePort(t *testing.T) int {
	p, err := testport.Free()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func tool(t *testing.T, script string) string {
	t.Helper()
	out, err := exec.Command("bash", "../../hack/"+script).Output()
	if err != nil {
		t.Fatalf("hack/%s: %v", script, err)
	}
	return strings.TrimSpace(string(out))
}

func start(t *testing.T, logPath, bin string, args ...string) {
	t.Helper()
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); log.Close() })
}

// minimal CRDs for the optional kinds the chart renders.
const crds = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: certificates.cert-manager.io}
spec:
  group: cert-manager.io
  scope: Namespaced
  names: {kind: Certificate, plural: certificates, singular: certificate}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: issuers.cert-manager.io}
spec:
  group: cert-manager.io
  scope: Namespaced
  names: {kind: Issuer, plural: issuers, singular: issuer}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`

// Every object the chart renders, for every values file, is accepted by a
// real Kubernetes API server (server-side dry run): wrong fields, types or
// API versions would be refused here.
func TestServerSideDryRun(t *testing.T) {
	dir := t.TempDir()
	etcd, apiserver, kubectl := tool(t, "install-etcd.sh"), tool(t, "install-kube-apiserver.sh"), tool(t, "install-kubectl.sh")

	client, peer := freePort(t), freePort(t)
	start(t, filepath.Join(dir, "etcd.log"), etcd, "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client), "--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer), "--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", peer), "--log-level", "warn")

	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	os.WriteFile(filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
	os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte("dryrun-token,admin,admin,system:masters\n"), 0o600)
	port := freePort(t)
	start(t, filepath.Join(dir, "apiserver.log"), apiserver,
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", client),
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(port), "--cert-dir", filepath.Join(dir, "certs"),
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"), "--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--authorization-mode", "AlwaysAllow", "--service-cluster-ip-range", "10.96.0.0/16", "--advertise-address", "127.0.0.1")

	server := fmt.Sprintf("https://127.0.0.1:%d", port)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		req, _ := http.NewRequest("GET", server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer dryrun-token")
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "apiserver.log"))
			t.Fatalf("kube-apiserver not ready: %v\n%s", err, b[max(0, len(b)-3000):])
		}
		time.Sleep(500 * time.Millisecond)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: dryrun-token}}]
contexts: [{name: test, context: {cluster: test, user: admin, namespace: mailfleet}}]
current-context: test
`, server)), 0o600)
	k := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := k("", "create", "namespace", "mailfleet"); err != nil {
		t.Fatalf("create namespace: %v\n%s", err, out)
	}
	// The controller-manager (not running here) would create the namespace's
	// default ServiceAccount, which pods need at admission.
	if out, err := k("", "create", "serviceaccount", "default", "-n", "mailfleet"); err != nil {
		t.Fatalf("default service account: %v\n%s", err, out)
	}
	if out, err := k(crds, "apply", "-f", "-"); err != nil {
		t.Fatalf("CRDs: %v\n%s", err, out)
	}
	if out, err := k("", "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com", "crd/certificates.cert-manager.io", "crd/issuers.cert-manager.io", "--timeout=60s"); err != nil {
		t.Fatalf("CRDs not established: %v\n%s", err, out)
	}
	// The defaults with cert-manager too: the chart's own CA chain.
	for _, args := range append(valuesFiles(t), certManagerAPI) {
		rendered, err := run(t, append([]string{"template", "mf", "mailfleet", "--namespace", "mailfleet"}, args...)...)
		if err != nil {
			t.Fatalf("helm template %v: %v", args, err)
		}
		out, err := k(rendered, "apply", "--dry-run=server", "-f", "-")
		if err != nil {
			t.Fatalf("server-side dry run of %v refused:\n%s", args, out)
		}
		if n := strings.Count(out, "(server dry run)"); n < 15 {
			t.Fatalf("only %d objects accepted for %v:\n%s", n, args, out)
		}
	}

	helmCertificatesAreKeptAndRenewed(t, k, kubeconfig)
}

// helmCertificatesAreKeptAndRenewed: in mode helm, a render against the
// cluster (what helm upgrade does) keeps the CA and every leaf it finds;
// it regenerates a leaf whose recorded expiry is within renewDaysBefore,
// and every leaf when the CA is gone.
func helmCertificatesAreKeptAndRenewed(t *testing.T, k func(string, ...string) (string, error), kubeconfig string) {
	renderTLS := func() (string, map[string]map[string]any) {
		out, err := run(t, "template", "mf", "mailfleet", "--namespace", "mailfleet", "--dry-run=server", "--kubeconfig", kubeconfig,
			"--set", "internalTLS.mode=helm", "--show-only", "templates/internal-tls.yaml")
		if err != nil {
			t.Fatalf("helm template --dry-run=server: %v\n%s", err, out)
		}
		secrets := map[string]map[string]any{}
		for _, doc := range strings.Split(out, "\n---") {
			var o map[string]any
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Fatal(err)
			}
			if o != nil {
				secrets[get(o, "metadata", "name").(string)] = o
			}
		}
		if len(secrets) != 7 {
			t.Fatalf("%d internal Secrets rendered", len(secrets))
		}
		return out, secrets
	}
	apply := func(manifest string) {
		if out, err := k(manifest, "apply", "-f", "-"); err != nil {
			t.Fatalf("apply: %v\n%s", err, out)
		}
	}
	same := func(a, b map[string]any) bool {
		return get(a, "data", "tls.crt") == get(b, "data", "tls.crt") && get(a, "data", "tls.key") == get(b, "data", "tls.key") &&
			get(a, "data", "ca.crt") == get(b, "data", "ca.crt")
	}
	const ca, inbound = "mf-mailfleet-internal-ca", "mf-mailfleet-inbound-client"

	manifest, first := renderTLS()
	apply(manifest)
	manifest, second := renderTLS()
	for name, s := range first {
		if !same(s, second[name]) {
			t.Errorf("%s regenerated by an upgrade although not due", name)
		}
	}
	apply(manifest)

	// inbound's certificate expires in 100 days: within renewDaysBefore (120).
	soon := time.Now().Add(100 * 24 * time.Hour).UTC().Format(time.RFC3339)
	if out, err := k("", "annotate", "--overwrite", "secret", inbound, "mailfleet.io/not-after="+soon); err != nil {
		t.Fatalf("annotate: %v\n%s", err, out)
	}
	manifest, third := renderTLS()
	for name, s := range third {
		if renewed := !same(s, second[name]); renewed != (name == inbound) {
			t.Errorf("%s regenerated = %v after inbound's expiry came near", name, renewed)
		}
	}
	notAfter, err := time.Parse(time.RFC3339, get(third[inbound], "metadata", "annotations", "mailfleet.io/not-after").(string))
	if err != nil || notAfter.Before(time.Now().Add(364*24*time.Hour)) {
		t.Errorf("renewed inbound certificate: not-after %v (%v)", notAfter, err)
	}
	apply(manifest)

	// Without the CA (deleted by hand: the way to a new CA), every leaf is new.
	if out, err := k("", "delete", "secret", ca); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	_, fourth := renderTLS()
	for name, s := range fourth {
		if same(s, third[name]) {
			t.Errorf("%s kept although the CA was regenerated", name)
		}
		if get(s, "data", "ca.crt") != get(fourth[ca], "data", "tls.crt") {
			t.Errorf("%s: ca.crt is not the new CA", name)
		}
	}
}
