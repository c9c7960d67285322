package images

import (
	"archive/tar"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// stage is what the Dockerfile says about one target.
type stage struct {
	from, user string
	entrypoint string
	ports      []string
	env        []string
}

func parseDockerfile(t *testing.T) map[string]*stage {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("Dockerfile does not parse: %v", err)
	}
	stages := map[string]*stage{}
	var cur *stage
	for _, n := range res.AST.Children {
		var args []string
		for a := n.Next; a != nil; a = a.Next {
			args = append(args, a.Value)
		}
		switch strings.ToUpper(n.Value) {
		case "FROM":
			cur = &stage{from: args[0]}
			if len(args) == 3 && strings.EqualFold(args[1], "AS") {
				stages[args[2]] = cur
			}
			if parent, ok := stages[args[0]]; ok {
				cur.user = parent.user
			}
		case "USER":
			cur.user = args[0]
		case "ENTRYPOINT":
			cur.entrypoint = strings.Join(args, " ")
		case "EXPOSE":
			for _, p := range args {
				cur.ports = append(cur.ports, p+"/tcp")
			}
		case "ENV":
			cur.env = append(cur.env, strings.Join(args, "="))
		}
	}
	return stages
}

// The Dockerfile builds static binaries and runs every image as non-root
// with the binary as entrypoint and the ports of Specs.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	if b := stages["build"]; b == nil || !strings.Contains(strings.Join(b.env, " "), "CGO_ENABLED=0") {
		t.Fatal("the build stage does not set CGO_ENABLED=0 (static binaries)")
	}
	if !strings.Contains(stages["base"].from, "distroless/static") {
		t.Fatalf("base image %q is not distroless static", stages["base"].from)
	}
	for _, s := range Specs {
		st := stages[s.Name]
		if st == nil {
			t.Fatalf("no %s target", s.Name)
		}
		if st.user != NonRoot {
			t.Errorf("%s runs as %q, want %s", s.Name, st.user, NonRoot)
		}
		if st.entrypoint != "/"+s.Name {
			t.Errorf("%s entrypoint %q", s.Name, st.entrypoint)
		}
		if strings.Join(st.ports, ",") != strings.Join(s.Ports, ",") {
			t.Errorf("%s exposes %v, the tarball %v", s.Name, st.ports, s.Ports)
		}
	}
}

// The tarballs build here, from static binaries, and each runs as non-root
// with its entrypoint and ports, and contains no shell.
func TestImageTarballs(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin, out := t.TempDir(), t.TempDir()
	for _, s := range Specs {
		pkg := "./services/" + s.Name
		if s.Name == "mailctl" {
			pkg = "./mailctl"
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(bin, s.Name), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", s.Name, err, b)
		}
		path := filepath.Join(out, s.Name+".tar")
		if err := Build(s, filepath.Join(bin, s.Name), "/etc/ssl/certs/ca-certificates.crt", "mailfleet", "test", path); err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Config.User != NonRoot || cfg.Config.User == "" || strings.HasPrefix(cfg.Config.User, "0") {
			t.Errorf("%s user %q", s.Name, cfg.Config.User)
		}
		if len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/"+s.Name {
			t.Errorf("%s entrypoint %v", s.Name, cfg.Config.Entrypoint)
		}
		var ports []string
		for p := range cfg.Config.ExposedPorts {
			ports = append(ports, p)
		}
		sort.Strings(ports)
		want := append([]string(nil), s.Ports...)
		sort.Strings(want)
		if strings.Join(ports, ",") != strings.Join(want, ",") {
			t.Errorf("%s ports %v, want %v", s.Name, ports, want)
		}
		if cfg.Config.Labels["org.opencontainers.image.source"] == "" {
			t.Errorf("%s has no source label", s.Name)
		}
		// Walk the filesystem: the binary is there and static; no shell.
		layers, _ := img.Layers()
		found := false
		for _, l := range layers {
			rc, err := l.Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			tr := tar.NewReader(rc)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				switch h.Name {
				case "bin/sh", "bin/bash", "bin/busybox", "usr/bin/sh":
					t.Errorf("%s contains a shell: %s", s.Name, h.Name)
				case s.Name:
					found = true
					data, _ := io.ReadAll(tr)
					tmp := filepath.Join(t.TempDir(), "bin")
					os.WriteFile(tmp, data, 0o755)
					f, err := elf.Open(tmp)
					if err != nil {
						t.Fatal(err)
					}
					for _, p := range f.Progs {
						if p.Type == elf.PT_INTERP {
							t.Errorf("%s is dynamically linked", s.Name)
						}
					}
					f.Close()
				}
			}
			rc.Close()
		}
		if !found {
			t.Errorf("%s: binary missing from the image", s.Name)
		}
	}
}

// An image with Path puts the binary there and on PATH, as an upstream image
// does (the chart runs `command: [etcd]` and `command: [minio]`).
func TestImageWithBinaryPath(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(bin, []byte("\x7fELF not really"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "tool.tar")
	spec := Spec{Name: "etcd", Path: "/usr/local/bin/etcd"}
	if err := Build(spec, bin, "/etc/ssl/certs/ca-certificates.crt", "mailfleet.local", "v1", out); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/usr/local/bin/etcd" {
		t.Errorf("entrypoint %v", cfg.Config.Entrypoint)
	}
	if !slices.Contains(cfg.Config.Env, "PATH=/usr/local/bin") {
		t.Errorf("env %v lacks PATH=/usr/local/bin", cfg.Config.Env)
	}
	layers, _ := img.Layers()
	rc, err := layers[len(layers)-1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var names []string
	tr := tar.NewReader(rc)
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		names = append(names, h.Name)
	}
	if !slices.Contains(names, "usr/local/bin/etcd") {
		t.Errorf("layer holds %v, not usr/local/bin/etcd", names)
	}
}
