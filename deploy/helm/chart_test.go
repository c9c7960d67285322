// Package helm tests the Mailfleet chart with the pinned helm: lint, render
// for every values file in ci/, and check what the rendered objects promise.
package helm

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

var (
	helmOnce sync.Once
	helmBin  string
	helmErr  error
)

// helm returns the pinned helm binary (built by hack/install-helm.sh, cached).
func helm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		out, err := exec.Command("bash", "../../hack/install-helm.sh").Output()
		helmBin, helmErr = strings.TrimSpace(string(out)), err
	})
	if helmErr != nil {
		t.Fatalf("hack/install-helm.sh: %v", helmErr)
	}
	return helmBin
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(helm(t), args...).CombinedOutput()
	return string(out), err
}

// render templates the chart and returns its objects.
func render(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	out, err := run(t, append([]string{"template", "mf", "mailfleet"}, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, out)
	}
	var objs []map[string]any
	for _, doc := range strings.Split(out, "\n---") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
	return objs
}

// certManagerAPI makes helm template render as for a cluster that serves
// cert-manager's API (helm install finds it out from the cluster).
var certManagerAPI = []string{"--api-versions", "cert-manager.io/v1"}

// valuesFiles is the defaults and every values file in ci/, as helm
// template arguments; a file that needs cert-manager renders with its API.
func valuesFiles(t *testing.T) [][]string {
	files, _ := filepath.Glob("mailfleet/ci/*.yaml")
	if len(files) < 4 {
		t.Fatalf("ci/ holds %d values files", len(files))
	}
	sets := [][]string{nil}
	for _, f := range files {
		args := []string{"-f", f}
		if strings.Contains(filepath.Base(f), "certmanager") {
			args = append(args, certManagerAPI...)
		}
		sets = append(sets, args)
	}
	return sets
}

// lintArgs drops what helm lint does not take (--api-versions: lint
// renders for no particular cluster).
func lintArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--api-versions" {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func TestLintAndTemplateEveryValuesFile(t *testing.T) {
	for _, args := range valuesFiles(t) {
		if out, err := run(t, append([]string{"lint", "mailfleet", "--strict"}, lintArgs(args)...)...); err != nil {
			t.Fatalf("helm lint %v: %v\n%s", args, err, out)
		}
		if objs := render(t, args...); len(objs) < 15 {
			t.Fatalf("%v renders only %d objects", args, len(objs))
		}
	}
}

func get(o any, path ...string) any {
	for _, p := range path {
		m, ok := o.(map[string]any)
		if !ok {
			return nil
		}
		o = m[p]
	}
	return o
}

// podSpec is the pod spec of a workload or pod object.
func podSpec(o map[string]any) (any, bool) {
	switch o["kind"] {
	case "Deployment", "StatefulSet", "Job":
		return get(o, "spec", "template", "spec"), true
	case "Pod":
		return o["spec"], true
	}
	return nil, false
}

// Every pod runs hardened: non-root, read-only root, no capabilities,
// RuntimeDefault seccomp; Mailfleet's own containers have probes.
func TestPodsAreHardened(t *testing.T) {
	for _, args := range valuesFiles(t) {
		for _, o := range render(t, args...) {
			kind := o["kind"].(string)
			spec, ok := podSpec(o)
			if !ok {
				continue
			}
			name := get(o, "metadata", "name")
			if get(spec, "securityContext", "runAsNonRoot") != true || get(spec, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
				t.Errorf("%s %s: pod security context %v", kind, name, get(spec, "securityContext"))
			}
			for _, c := range get(spec, "containers").([]any) {
				sc := get(c, "securityContext")
				caps, _ := get(sc, "capabilities", "drop").([]any)
				if get(sc, "readOnlyRootFilesystem") != true || get(sc, "allowPrivilegeEscalation") != false || len(caps) != 1 || caps[0] != "ALL" {
					t.Errorf("%s %s: container security context %v", kind, name, sc)
				}
				// Mailfleet's own answer /readyz; others (rspamd) their own path.
				image, _ := get(c, "image").(string)
				ours := strings.HasPrefix(image, "mailfleet/")
				if kind == "Deployment" && (ours && get(c, "readinessProbe", "httpGet", "path") != "/readyz" || get(c, "readinessProbe") == nil || get(c, "livenessProbe") == nil) {
					t.Errorf("%s %s: probes missing", kind, name)
				}
			}
		}
	}
}

// The mail Services publish the standard ports on the unprivileged
// container ports; storage is internal only.
func TestServices(t *testing.T) {
	want := map[string]map[float64]string{
		"mf-mailfleet-inbound":    {25: "smtp"},
		"mf-mailfleet-submission": {587: "submission", 465: "submissions"},
		"mf-mailfleet-access":     {143: "imap", 993: "imaps", 110: "pop3", 995: "pop3s"},
	}
	for _, o := range render(t) {
		if o["kind"] != "Service" {
			continue
		}
		name := get(o, "metadata", "name").(string)
		if name == "mf-mailfleet-storage" && get(o, "spec", "type") != "ClusterIP" {
			t.Errorf("storage Service is %v", get(o, "spec", "type"))
		}
		ports, ok := want[name]
		if !ok {
			continue
		}
		if get(o, "spec", "type") != "LoadBalancer" || get(o, "spec", "externalTrafficPolicy") != "Local" {
			t.Errorf("%s: type %v policy %v", name, get(o, "spec", "type"), get(o, "spec", "externalTrafficPolicy"))
		}
		for _, p := range get(o, "spec", "ports").([]any) {
			port := get(p, "port").(float64)
			if ports[port] != get(p, "targetPort") {
				t.Errorf("%s: port %v → %v", name, port, get(p, "targetPort"))
			}
			delete(ports, port)
		}
		if len(ports) != 0 {
			t.Errorf("%s lacks ports %v", name, ports)
		}
	}
}

// Only storage reaches etcd and MinIO.
func TestNetworkPolicies(t *testing.T) {
	found := 0
	for _, o := range render(t) {
		if o["kind"] != "NetworkPolicy" {
			continue
		}
		name := get(o, "metadata", "name").(string)
		if name == "mf-mailfleet-etcd" || name == "mf-mailfleet-minio" {
			found++
			from := get(get(o, "spec", "ingress").([]any)[0], "from").([]any)
			if get(from[0], "podSelector", "matchLabels", "app.kubernetes.io/component") != "storage" {
				t.Errorf("%s admits %v", name, from)
			}
		}
	}
	if found != 2 {
		t.Fatalf("%d engine NetworkPolicies, want 2", found)
	}
}

// The bundled MinIO starts empty and `helm install --wait` waits for
// storage to be Ready before any post-install hook runs, so storage itself
// must create the bucket; with an external store it must not try.
func TestStorageCreatesOnlyTheBundledBucket(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{nil, true},
		{[]string{"--set", "objectStore.bundled=false,objectStore.external.endpoint=s3:443,objectStore.existingSecret=s3"}, false},
	} {
		found := false
		for _, o := range render(t, c.args...) {
			if o["kind"] != "Deployment" || get(o, "metadata", "name") != "mf-mailfleet-storage" {
				continue
			}
			found = true
			args := get(get(o, "spec", "template", "spec", "containers").([]any)[0], "args").([]any)
			if got := slices.Contains(args, any("--s3-create-bucket")); got != c.want {
				t.Errorf("%v: --s3-create-bucket present = %v, want %v", c.args, got, c.want)
			}
		}
		if !found {
			t.Fatalf("%v: no storage Deployment", c.args)
		}
	}
}

// Every Mailfleet container's command line, as rendered with each values
// file, is accepted by the binary it runs: a flag the binary lacks would
// otherwise show only as a crash-looping pod. Each binary parses the
// rendered arguments, then -h stops it before it starts serving.
func TestRenderedArgumentsParse(t *testing.T) {
	bin := t.TempDir()
	for _, pkg := range []string{"services/storage", "services/access", "services/inbound", "services/submission", "mailctl"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(bin, filepath.Base(pkg)), "github.com/mailfleet/mailfleet/"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("building %s: %v\n%s", pkg, err, out)
		}
	}
	checked := 0
	for _, args := range valuesFiles(t) {
		for _, o := range render(t, args...) {
			spec, ok := podSpec(o)
			if !ok {
				continue
			}
			for _, c := range get(spec, "containers").([]any) {
				image, _ := get(c, "image").(string)
				name := strings.TrimPrefix(image[:strings.LastIndex(image, ":")], "mailfleet/")
				if strings.Contains(name, "/") {
					continue // etcd, MinIO: not ours
				}
				var argv []string
				for _, a := range get(c, "args").([]any) {
					argv = append(argv, a.(string))
				}
				// The container's literal environment too: mailctl takes
				// the storage address and its identity from there.
				cmd := exec.Command(filepath.Join(bin, name), append(argv, "-h")...)
				cmd.Env = os.Environ()
				for _, e := range sliceOf(get(c, "env")) {
					if v, ok := get(e, "value").(string); ok {
						cmd.Env = append(cmd.Env, get(e, "name").(string)+"="+v)
					}
				}
				out, _ := cmd.CombinedOutput()
				if name == "mailctl" && strings.HasPrefix(string(out), "mailctl: storage TLS: open /etc/mailfleet/") {
					// mailctl parsed its global flags and loads the mounted
					// certificates before its subcommand's flags, which the
					// other values files check.
					checked++
					continue
				}
				if bad := regexp.MustCompile(`flag provided but not defined.*|invalid (boolean )?value.*`).Find(out); bad != nil || !strings.Contains(string(out), "Usage of") {
					t.Errorf("%v %s %v: %s refuses its arguments: %s", args, o["kind"], get(o, "metadata", "name"), name, bad)
				}
				checked++
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d command lines", checked)
	}
}

// The MX gets the per-address connection limit (50 by default, as
// Postfix's smtpd_client_connection_count_limit) and the DNSBL zones.
func TestInboundLimitsAndDNSBL(t *testing.T) {
	want := map[string][]string{
		"": {"--max-conns-per-ip=50", "--dnsbl=", "--dnsbl-temperror=skip"},
		"inbound.maxConnectionsPerIP=7,inbound.dnsblZones={zen.example,bl.example},inbound.dnsblTempError=tempfail": {
			"--max-conns-per-ip=7", "--dnsbl=zen.example,bl.example", "--dnsbl-temperror=tempfail"},
	}
	for set, flags := range want {
		args := []string{}
		if set != "" {
			args = []string{"--set", set}
		}
		found := false
		for _, o := range render(t, args...) {
			if o["kind"] != "Deployment" || !strings.HasSuffix(get(o, "metadata", "name").(string), "-inbound") {
				continue
			}
			spec, _ := podSpec(o)
			var argv []string
			for _, a := range get(get(spec, "containers").([]any)[0], "args").([]any) {
				argv = append(argv, a.(string))
			}
			for _, f := range flags {
				if !slices.Contains(argv, f) {
					t.Errorf("--set %s: inbound args %v lack %s", set, argv, f)
				}
			}
			found = true
		}
		if !found {
			t.Fatalf("--set %s: no inbound Deployment", set)
		}
	}
}

// The schema refuses wrong types and unknown keys; the validate helper
// refuses impossible combinations; each says what is wrong.
func TestBadValuesAreRefusedClearly(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--set", "storage.replicas=two"}, "/storage/replicas': got string, want integer"},
		{[]string{"--set", "nonsense=1"}, "nonsense"},
		{[]string{"--set", "etcd.replicas=2"}, "/etcd/replicas': value must be one of 1, 3, 5"},
		{[]string{"--set", "service.type=ClusterIP"}, "/service/type'"},
		{[]string{"--set", "etcd.bundled=false"}, "etcd.external.endpoints"},
		{[]string{"--set", "objectStore.bundled=false,objectStore.external.endpoint=s3:443"}, "objectStore.existingSecret"},
		{[]string{"--set", "tls.existingSecret="}, "tls.existingSecret or tls.certManager.enabled"},
		{[]string{"--set", "internalTLS.enabled=true"}, "/internalTLS': additional properties 'enabled' not allowed"},
		{[]string{"--set", "internalTLS.mode=vault"}, "/internalTLS/mode': value must be one of"},
		{[]string{"--set", "internalTLS.mode=certManager"}, "does not serve the cert-manager.io/v1 API"},
		{[]string{"--set", "internalTLS.mode=existingSecrets"}, "set internalTLS.existingSecrets.ca, internalTLS.existingSecrets.storage, internalTLS.existingSecrets.inbound, internalTLS.existingSecrets.submission, internalTLS.existingSecrets.queue, internalTLS.existingSecrets.access, internalTLS.existingSecrets.admin"},
		{[]string{"-f", "mailfleet/ci/internal-mtls-values.yaml", "--set", "internalTLS.existingSecrets.queue="}, "set internalTLS.existingSecrets.queue ("},
		{[]string{"--set", "internalTLS.helm.renewDaysBefore=365"}, "renewDaysBefore must be below internalTLS.helm.certDays"},
		{[]string{"--set", "access.terminationGracePeriodSeconds=12"}, "at least shutdownDelaySeconds + 10"},
		{[]string{"--set", "inbound.dnsblTempError=maybe"}, "/inbound/dnsblTempError': value must be one of"},
		{[]string{"--set", "inbound.dnsblZones[0]=bad zone"}, "/inbound/dnsblZones/0'"},
		{[]string{"--set", "inbound.milter.defaultAction=drop"}, "/inbound/milter/defaultAction': value must be one of"},
	}
	for _, c := range cases {
		out, err := run(t, append([]string{"template", "mf", "mailfleet"}, c.args...)...)
		if err == nil {
			t.Errorf("%v rendered", c.args)
			continue
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("%v: error does not name %q:\n%s", c.args, c.want, out)
		}
	}
}

func TestMain(m *testing.M) {
	if _, err := os.Stat("mailfleet/Chart.yaml"); err != nil {
		panic("run from deploy/helm")
	}

	os.Exit(m.Run())
}
