// Package images builds Mailfleet's container images as OCI tarballs from
// static binaries with go-containerregistry — no Docker engine needed. They
// match deploy/images/Dockerfile: non-root user 65532, the binary as the
// entrypoint, the same ports and labels, CA certificates, and no shell.
package images

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Spec describes one image.
type Spec struct {
	Name  string   // image and binary name
	Ports []string // "1430/tcp"
	// Path is where the binary goes in the image (default "/<Name>"); its
	// directory is the image's PATH, so a pod's `command: [<Name>]` finds it.
	Path string
}

func (s Spec) binaryPath() string {
	if s.Path != "" {
		return s.Path
	}
	return "/" + s.Name
}

// Specs are the images Mailfleet ships (ports as in the Dockerfile).
var Specs = []Spec{
	{Name: "storage", Ports: []string{"7070/tcp", "7071/tcp"}},
	{Name: "access", Ports: []string{"1430/tcp", "9930/tcp", "1100/tcp", "9950/tcp", "7081/tcp"}},
	{Name: "inbound", Ports: []string{"2525/tcp", "7091/tcp"}},
	{Name: "submission", Ports: []string{"5870/tcp", "4650/tcp", "7101/tcp"}},
	{Name: "mailctl"},
}

// NonRoot is the distroless "nonroot" user.
const NonRoot = "65532:65532"

// Labels every image carries.
var Labels = map[string]string{
	"org.opencontainers.image.source":   "https://github.com/mailfleet/mailfleet",
	"org.opencontainers.image.licenses": "Apache-2.0",
}

// fixed time makes the layers reproducible.
var epoch = time.Unix(0, 0)

// layer builds one tar layer from (path in image → content, mode) entries.
func layer(files map[string]file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, path := range sortedKeys(files) {
		for d := filepath.Dir(path); d != "/" && d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range sortedKeys(boolsToFiles(dirs)) {
		tw.WriteHeader(&tar.Header{Name: d[1:] + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch})
	}
	for _, path := range sortedKeys(files) {
		f := files[path]
		if err := tw.WriteHeader(&tar.Header{Name: path[1:], Typeflag: tar.TypeReg, Mode: f.mode, Size: int64(len(f.data)), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}

type file struct {
	data []byte
	mode int64
}

// Build makes the image of spec from the static binary at binPath, with CA
// certificates from caPath, and writes it to out as an OCI (docker-load
// compatible) tarball tagged repo/name:tag.
func Build(spec Spec, binPath, caPath, repo, tag, out string) error {
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(caPath)
	if err != nil {
		return fmt.Errorf("CA certificates: %w", err)
	}
	base, err := layer(map[string]file{
		"/etc/ssl/certs/ca-certificates.crt": {ca, 0o644},
		"/etc/passwd":                        {[]byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"), 0o644},
		"/etc/group":                         {[]byte("root:x:0:\nnonroot:x:65532:\n"), 0o644},
		"/tmp/.keep":                         {nil, 0o644},
	})
	if err != nil {
		return err
	}
	app, err := layer(map[string]file{spec.binaryPath(): {bin, 0o755}})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, base, app)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.User = NonRoot
	cfg.Config.Entrypoint = []string{spec.binaryPath()}
	cfg.Config.WorkingDir = "/"
	cfg.Config.Env = []string{"PATH=" + filepath.Dir(spec.binaryPath()), "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cfg.Config.Labels = Labels
	if len(spec.Ports) > 0 {
		cfg.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range spec.Ports {
			cfg.Config.ExposedPorts[p] = struct{}{}
		}
	}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return err
	}
	ref, err := name.NewTag(fmt.Sprintf("%s/%s:%s", repo, spec.Name, tag))
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, ref, img)
}

func sortedKeys(m map[string]file) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func boolsToFiles(m map[string]bool) map[string]file {
	out := map[string]file{}
	for k := range m {
		out[k] = file{}
	}
	return out
}
