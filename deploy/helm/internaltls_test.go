package helm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
)

// The identities of mTLS between the tiers: storage serves, the others call
// it; the storage server takes the caller's role from the CN.
var roles = []string{"storage", "inbound", "submission", "queue", "access", "admin"}

// leafSecret is the chart's Secret of an identity (release mf).
func leafSecret(role string) string {
	if role == "storage" {
		return "mf-mailfleet-storage-grpc"
	}
	return "mf-mailfleet-" + role + "-client"
}

func sliceOf(v any) []any { s, _ := v.([]any); return s }

func str(v any) string { s, _ := v.(string); return s }

func named(objs []map[string]any, kind, name string) map[string]any {
	for _, o := range objs {
		if o["kind"] == kind && get(o, "metadata", "name") == name {
			return o
		}
	}
	return nil
}

// internalObjects are the names of the rendered objects of one kind with
// app.kubernetes.io/component internal-tls, sorted.
func internalObjects(objs []map[string]any, kind string) []string {
	var names []string
	for _, o := range objs {
		if o["kind"] == kind && get(o, "metadata", "labels", "app.kubernetes.io/component") == "internal-tls" {
			names = append(names, get(o, "metadata", "name").(string))
		}
	}
	slices.Sort(names)
	return names
}

func pemCert(t *testing.T, b64 string) (*x509.Certificate, []byte) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("not one PEM certificate: %q", raw)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c, raw
}

// storageNames are the names a client may dial storage by: every storage
// Service the chart renders, in every form inside the cluster.
func storageNames(t *testing.T, objs []map[string]any, ns string) []string {
	var names []string
	for _, o := range objs {
		n := str(get(o, "metadata", "name"))
		if o["kind"] == "Service" && strings.HasPrefix(n, "mf-mailfleet-storage") {
			names = append(names, n, n+"."+ns, n+"."+ns+".svc", n+"."+ns+".svc.cluster.local")
		}
	}
	if len(names) != 8 {
		t.Fatalf("storage Services: %v", names)
	}
	return names
}

// The default render is mTLS with certificates Helm generates: a CA and six
// distinct identities, each CN mailfleet-<role>, signed by that CA, with the
// right key usage; storage's valid for every name of its Services and for
// 127.0.0.1 and localhost (mailctl through a port-forward), and for the
// address every client is given.
func TestInternalTLSDefaultIsMutualTLSWithGeneratedCertificates(t *testing.T) {
	objs := render(t, "--namespace", "mail")
	wantSecrets := []string{"mf-mailfleet-internal-ca"}
	for _, r := range roles {
		wantSecrets = append(wantSecrets, leafSecret(r))
	}
	slices.Sort(wantSecrets)
	if got := internalObjects(objs, "Secret"); !slices.Equal(got, wantSecrets) {
		t.Fatalf("internal Secrets %v, want %v", got, wantSecrets)
	}
	if got := internalObjects(objs, "Certificate"); len(got) != 0 {
		t.Fatalf("cert-manager Certificates without cert-manager: %v", got)
	}

	caSecret := named(objs, "Secret", "mf-mailfleet-internal-ca")
	if get(caSecret, "metadata", "annotations", "helm.sh/resource-policy") != "keep" {
		t.Errorf("the CA Secret is not kept by helm uninstall")
	}
	ca, caPEM := pemCert(t, str(get(caSecret, "data", "tls.crt")))
	if !ca.IsCA || ca.Subject.CommonName != "mailfleet-internal-ca" {
		t.Fatalf("CA: IsCA %v, CN %q", ca.IsCA, ca.Subject.CommonName)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	seenKeys := map[string]string{}
	for _, role := range roles {
		s := named(objs, "Secret", leafSecret(role))
		if s["type"] != "kubernetes.io/tls" {
			t.Errorf("%s: type %v", role, s["type"])
		}
		if get(s, "metadata", "annotations", "mailfleet.io/not-after") == nil {
			t.Errorf("%s: no mailfleet.io/not-after annotation", role)
		}
		if _, leafCA := pemCert(t, str(get(s, "data", "ca.crt"))); !bytes.Equal(leafCA, caPEM) {
			t.Errorf("%s: ca.crt is not the CA", role)
		}
		cert, certPEM := pemCert(t, str(get(s, "data", "tls.crt")))
		key, _ := base64.StdEncoding.DecodeString(str(get(s, "data", "tls.key")))
		if _, err := tls.X509KeyPair(certPEM, key); err != nil {
			t.Errorf("%s: tls.key does not match tls.crt: %v", role, err)
		}
		if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
			t.Errorf("%s: key %T, want ECDSA P-256", role, cert.PublicKey)
		}
		if cn := cert.Subject.CommonName; cn != "mailfleet-"+role {
			t.Errorf("%s: CN %q", role, cn)
		}
		spki := string(cert.RawSubjectPublicKeyInfo)
		if other, dup := seenKeys[spki]; dup {
			t.Errorf("%s shares its key with %s", role, other)
		}
		seenKeys[spki] = role
		if role == "storage" {
			if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
				t.Errorf("storage: ExtKeyUsage %v lacks serverAuth", cert.ExtKeyUsage)
			}
			names := append(storageNames(t, objs, "mail"), "localhost", "127.0.0.1",
				"mf-mailfleet-storage-headless:7070") // what the clients dial, below
			for _, n := range names {
				host := n
				if h, _, err := net.SplitHostPort(n); err == nil {
					host = h
				}
				if _, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
					t.Errorf("storage certificate for %q: %v", host, err)
				}
			}
			continue
		}
		// A client certificate names no host: it cannot pass for storage.
		if len(cert.DNSNames)+len(cert.IPAddresses) != 0 {
			t.Errorf("%s: client certificate valid for hosts %v %v", role, cert.DNSNames, cert.IPAddresses)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: not a client certificate of the CA: %v", role, err)
		}
	}
	if len(seenKeys) != len(roles) {
		t.Errorf("%d distinct keys for %d identities", len(seenKeys), len(roles))
	}

	// The clients dial the headless Service, which the certificate covers.
	for _, o := range objs {
		spec, ok := podSpec(o)
		if !ok {
			continue
		}
		for _, c := range sliceOf(get(spec, "containers")) {
			for _, a := range sliceOf(get(c, "args")) {
				if addr, ok := strings.CutPrefix(str(a), "--storage="); ok && addr != "mf-mailfleet-storage-headless:7070" {
					t.Errorf("%v dials storage at %s", get(o, "metadata", "name"), addr)
				}
			}
			for _, e := range sliceOf(get(c, "env")) {
				if get(e, "name") == "MAILFLEET_STORAGE" && get(e, "value") != "mf-mailfleet-storage-headless:7070" {
					t.Errorf("%v: MAILFLEET_STORAGE %v", get(o, "metadata", "name"), get(e, "value"))
				}
			}
		}
	}
}

// identity is what one container gets of mTLS: the Secrets behind each
// mount path, and its storage flags and environment.
type identity struct {
	mounts map[string][]string // mount path → Secrets projected there
	args   []string            // --storage-*, --queue-storage-*, --grpc-*, --insecure-*
	env    map[string]string   // MAILFLEET_STORAGE*
}

// identities maps "Kind/name" of every Mailfleet pod to its identity.
func identities(t *testing.T, objs []map[string]any) map[string]identity {
	ids := map[string]identity{}
	for _, o := range objs {
		spec, ok := podSpec(o)
		if !ok {
			continue
		}
		volumes := map[string][]string{}
		for _, v := range sliceOf(get(spec, "volumes")) {
			var secrets []string
			if s := str(get(v, "secret", "secretName")); s != "" {
				secrets = append(secrets, s)
			}
			for _, src := range sliceOf(get(v, "projected", "sources")) {
				if s := str(get(src, "secret", "name")); s != "" && !slices.Contains(secrets, s) {
					secrets = append(secrets, s)
				}
			}
			volumes[str(get(v, "name"))] = secrets
		}
		for _, c := range sliceOf(get(spec, "containers")) {
			image := str(get(c, "image"))
			if !strings.HasPrefix(image, "mailfleet/") {
				continue // etcd, MinIO
			}
			id := identity{mounts: map[string][]string{}, env: map[string]string{}}
			for _, m := range sliceOf(get(c, "volumeMounts")) {
				id.mounts[str(get(m, "mountPath"))] = volumes[str(get(m, "name"))]
			}
			for _, a := range sliceOf(get(c, "args")) {
				if s := str(a); strings.HasPrefix(s, "--storage-") || strings.HasPrefix(s, "--queue-storage-") ||
					strings.HasPrefix(s, "--grpc-tls-") || strings.HasPrefix(s, "--grpc-client-") || strings.HasPrefix(s, "--insecure") {
					id.args = append(id.args, s)
				}
			}
			for _, e := range sliceOf(get(c, "env")) {
				if n := str(get(e, "name")); strings.HasPrefix(n, "MAILFLEET_STORAGE") || strings.HasPrefix(n, "MAILFLEET_INSECURE") {
					id.env[n] = str(get(e, "value"))
				}
			}
			ids[fmt.Sprintf("%s/%s", o["kind"], get(o, "metadata", "name"))] = id
		}
	}
	return ids
}

const (
	own   = "/etc/mailfleet/internal"
	queue = "/etc/mailfleet/queue-internal"
)

func clientArgs(dir string) []string {
	return []string{"--storage-ca=" + dir + "/ca.crt", "--storage-cert=" + dir + "/tls.crt", "--storage-key=" + dir + "/tls.key"}
}

var mailctlEnv = map[string]string{"MAILFLEET_STORAGE": "mf-mailfleet-storage-headless:7070",
	"MAILFLEET_STORAGE_CA": own + "/ca.crt", "MAILFLEET_STORAGE_CERT": own + "/tls.crt", "MAILFLEET_STORAGE_KEY": own + "/tls.key"}

// wantIdentities: every pod mounts its own identity and no other (the
// admin one only the bootstrap Job and helm test; submission its own and
// the queue runner's), with matching flags; ca names the Secret of ca.crt
// when it is not the identity's own.
func wantIdentities(secret func(string) string, ca string) map[string]identity {
	m := func(role string) []string {
		if ca == "" {
			return []string{secret(role)}
		}
		return []string{secret(role), ca}
	}
	return map[string]identity{
		"Deployment/mf-mailfleet-storage": {mounts: map[string][]string{own: m("storage")},
			args: []string{"--grpc-tls-cert=" + own + "/tls.crt", "--grpc-tls-key=" + own + "/tls.key", "--grpc-client-ca=" + own + "/ca.crt"}},
		"Deployment/mf-mailfleet-inbound": {mounts: map[string][]string{own: m("inbound")}, args: clientArgs(own)},
		"Deployment/mf-mailfleet-access":  {mounts: map[string][]string{own: m("access")}, args: clientArgs(own)},
		"Deployment/mf-mailfleet-submission": {mounts: map[string][]string{own: m("submission"), queue: m("queue")},
			args: append(clientArgs(own), "--queue-storage-cert="+queue+"/tls.crt", "--queue-storage-key="+queue+"/tls.key")},
		"Job/mf-mailfleet-bootstrap":     {mounts: map[string][]string{own: m("admin")}, env: mailctlEnv},
		"Pod/mf-mailfleet-test-mailflow": {mounts: map[string][]string{own: m("admin")}, env: mailctlEnv},
	}
}

func checkIdentities(t *testing.T, what string, objs []map[string]any, want map[string]identity) {
	t.Helper()
	got := identities(t, objs)
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
		t.Fatalf("%s: Mailfleet pods %v, want %v", what, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	for pod, w := range want {
		g := got[pod]
		internal := map[string][]string{}
		for path, secrets := range g.mounts {
			if strings.HasPrefix(path, "/etc/mailfleet/internal") || strings.HasPrefix(path, "/etc/mailfleet/queue-internal") {
				internal[path] = secrets
			}
		}
		if w.mounts == nil {
			w.mounts = map[string][]string{}
		}
		if !maps.EqualFunc(internal, w.mounts, slices.Equal) {
			t.Errorf("%s: %s mounts %v, want %v", what, pod, internal, w.mounts)
		}
		if !slices.Equal(g.args, w.args) {
			t.Errorf("%s: %s storage flags %q, want %q", what, pod, g.args, w.args)
		}
		if w.env == nil {
			w.env = map[string]string{}
		}
		if !maps.Equal(g.env, w.env) {
			t.Errorf("%s: %s environment %v, want %v", what, pod, g.env, w.env)
		}
		// The chart's CA Secret (which holds the CA's key) reaches no pod.
		for path, secrets := range g.mounts {
			if slices.Contains(secrets, "mf-mailfleet-internal-ca") {
				t.Errorf("%s: %s mounts the CA Secret at %s", what, pod, path)
			}
		}
	}
}

// Every pod mounts only its own identity, in the Helm-generated (default),
// cert-manager and existing-Secrets modes alike; no --insecure-* flag.
func TestInternalTLSEachPodGetsOnlyItsOwnIdentity(t *testing.T) {
	checkIdentities(t, "helm", render(t), wantIdentities(leafSecret, ""))
	checkIdentities(t, "cert-manager", render(t, certManagerAPI...), wantIdentities(leafSecret, ""))
	existing := func(role string) string { return strings.Replace(leafSecret(role), "mf-mailfleet-", "mailfleet-", 1) }
	objs := render(t, "-f", "mailfleet/ci/internal-mtls-values.yaml")
	checkIdentities(t, "existingSecrets", objs, wantIdentities(existing, "mailfleet-internal-ca"))
	if got := append(internalObjects(objs, "Secret"), internalObjects(objs, "Certificate")...); len(got) != 0 {
		t.Errorf("existingSecrets renders certificates: %v", got)
	}
	for _, args := range valuesFiles(t) {
		out, err := run(t, append([]string{"template", "mf", "mailfleet"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "--insecure") != slices.Contains(args, "mailfleet/ci/insecure-plaintext-values.yaml") {
			t.Errorf("%v: --insecure flag rendered = %v", args, strings.Contains(out, "--insecure"))
		}
	}
}

// insecurePlaintext: the insecure flags everywhere, nothing TLS mounted or made.
func TestInternalTLSInsecurePlaintext(t *testing.T) {
	objs := render(t, "--set", "internalTLS.insecurePlaintext=true")
	want := map[string]identity{
		"Deployment/mf-mailfleet-storage":    {args: []string{"--insecure-plaintext-grpc"}},
		"Deployment/mf-mailfleet-inbound":    {args: []string{"--insecure-plaintext-storage"}},
		"Deployment/mf-mailfleet-access":     {args: []string{"--insecure-plaintext-storage"}},
		"Deployment/mf-mailfleet-submission": {args: []string{"--insecure-plaintext-storage"}},
		"Job/mf-mailfleet-bootstrap":         {args: []string{"--insecure-plaintext-storage"}, env: map[string]string{"MAILFLEET_STORAGE": "mf-mailfleet-storage-headless:7070"}},
		"Pod/mf-mailfleet-test-mailflow":     {args: []string{"--insecure-plaintext-storage"}, env: map[string]string{"MAILFLEET_STORAGE": "mf-mailfleet-storage-headless:7070"}},
	}
	checkIdentities(t, "insecure", objs, want)
	if got := append(internalObjects(objs, "Secret"), internalObjects(objs, "Certificate")...); len(got) != 0 {
		t.Errorf("insecurePlaintext renders certificates: %v", got)
	}
	// Even with cert-manager at hand.
	if got := internalObjects(render(t, append(certManagerAPI, "--set", "internalTLS.insecurePlaintext=true")...), "Certificate"); len(got) != 0 {
		t.Errorf("insecurePlaintext with cert-manager renders Certificates: %v", got)
	}
}

// With cert-manager's API (mode auto), cert-manager issues everything: the
// chart's own CA chain (self-signed Issuer → CA Certificate → CA Issuer) and
// six leaves from it, and Helm generates no Secret.
func TestInternalTLSCertManager(t *testing.T) {
	objs := render(t, append(certManagerAPI, "--namespace", "mail")...)
	if got := internalObjects(objs, "Secret"); len(got) != 0 {
		t.Errorf("Helm-generated Secrets besides cert-manager: %v", got)
	}
	if got, want := internalObjects(objs, "Issuer"), []string{"mf-mailfleet-internal-ca", "mf-mailfleet-internal-selfsigned"}; !slices.Equal(got, want) {
		t.Errorf("Issuers %v, want %v", got, want)
	}
	if get(named(objs, "Issuer", "mf-mailfleet-internal-selfsigned"), "spec", "selfSigned") == nil ||
		get(named(objs, "Issuer", "mf-mailfleet-internal-ca"), "spec", "ca", "secretName") != "mf-mailfleet-internal-ca" {
		t.Errorf("the CA Issuers are not self-signed → CA Secret")
	}
	ca := named(objs, "Certificate", "mf-mailfleet-internal-ca")
	if get(ca, "spec", "isCA") != true || get(ca, "spec", "secretName") != "mf-mailfleet-internal-ca" || get(ca, "spec", "issuerRef", "name") != "mf-mailfleet-internal-selfsigned" {
		t.Errorf("CA Certificate %v", get(ca, "spec"))
	}
	want := []string{"mf-mailfleet-internal-ca"}
	for _, r := range roles {
		want = append(want, leafSecret(r))
	}
	slices.Sort(want)
	if got := internalObjects(objs, "Certificate"); !slices.Equal(got, want) {
		t.Fatalf("Certificates %v, want %v", got, want)
	}
	for _, role := range roles {
		spec := get(named(objs, "Certificate", leafSecret(role)), "spec")
		usage := "client auth"
		if role == "storage" {
			usage = "server auth"
		}
		if get(spec, "commonName") != "mailfleet-"+role || get(spec, "secretName") != leafSecret(role) ||
			!slices.Equal(sliceOf(get(spec, "usages")), []any{"digital signature", usage}) ||
			get(spec, "issuerRef", "kind") != "Issuer" || get(spec, "issuerRef", "name") != "mf-mailfleet-internal-ca" ||
			get(spec, "privateKey", "algorithm") != "ECDSA" || get(spec, "privateKey", "size") != 256.0 ||
			get(spec, "duration") == nil || get(spec, "renewBefore") == nil {
			t.Errorf("%s: Certificate %v", role, spec)
		}
		if role == "storage" {
			var names []string
			for _, n := range sliceOf(get(spec, "dnsNames")) {
				names = append(names, n.(string))
			}
			for _, n := range append(storageNames(t, objs, "mail"), "localhost") {
				if !slices.Contains(names, n) {
					t.Errorf("storage Certificate lacks %s: %v", n, names)
				}
			}
			if !slices.Equal(sliceOf(get(spec, "ipAddresses")), []any{"127.0.0.1"}) {
				t.Errorf("storage Certificate IPs %v", get(spec, "ipAddresses"))
			}
		} else if get(spec, "dnsNames") != nil || get(spec, "ipAddresses") != nil {
			t.Errorf("%s: client Certificate names hosts", role)
		}
	}

	// An issuer of the operator's: no CA chain of the chart's.
	objs = render(t, append(certManagerAPI, "--set", "internalTLS.certManager.issuerRef.kind=ClusterIssuer,internalTLS.certManager.issuerRef.name=corp-ca")...)
	if got := internalObjects(objs, "Issuer"); len(got) != 0 {
		t.Errorf("Issuers with an issuer of the operator's: %v", got)
	}
	if got := internalObjects(objs, "Certificate"); len(got) != len(roles) {
		t.Errorf("Certificates with an issuer of the operator's: %v", got)
	}
	for _, role := range roles {
		if ref := get(named(objs, "Certificate", leafSecret(role)), "spec", "issuerRef"); get(ref, "kind") != "ClusterIssuer" || get(ref, "name") != "corp-ca" {
			t.Errorf("%s: issuerRef %v", role, ref)
		}
	}
	// mode helm pins Helm's certificates even where cert-manager is.
	if got := internalObjects(render(t, append(certManagerAPI, "--set", "internalTLS.mode=helm")...), "Certificate"); len(got) != 0 {
		t.Errorf("mode helm renders Certificates: %v", got)
	}
}
