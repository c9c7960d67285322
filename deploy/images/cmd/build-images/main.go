// Command build-images builds container images as OCI tarballs from static
// binaries, with no Docker engine: every Mailfleet image from the binaries in
// --bin (see `make images`), and with --extra any other static program, such
// as the pinned etcd and MinIO that hack/local-k8s.sh runs on a cluster
// without a registry.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailfleet/mailfleet/deploy/images"
)

// extraImage is one --extra flag: name:tag=binary@path-in-image.
type extraImage struct {
	spec     images.Spec
	tag, bin string
}

type extraFlag []extraImage

func (f *extraFlag) String() string { return fmt.Sprint(len(*f)) }

func (f *extraFlag) Set(v string) error {
	ref, rest, ok1 := strings.Cut(v, "=")
	bin, path, ok2 := strings.Cut(rest, "@")
	name, tag, ok3 := strings.Cut(ref, ":")
	if !ok1 || !ok2 || !ok3 || !strings.HasPrefix(path, "/") {
		return fmt.Errorf("want name:tag=binary@/path/in/image, got %q", v)
	}
	*f = append(*f, extraImage{images.Spec{Name: name, Path: path}, tag, bin})
	return nil
}

func main() {
	bin := flag.String("bin", "bin/static", "directory of static (CGO_ENABLED=0) Mailfleet binaries")
	out := flag.String("out", "bin/images", "where the tarballs go")
	repo := flag.String("repo", "mailfleet", "image repository prefix")
	tag := flag.String("tag", "dev", "tag of the Mailfleet images")
	ca := flag.String("ca", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to include")
	mailfleet := flag.Bool("mailfleet", true, "build the Mailfleet images")
	var extras extraFlag
	flag.Var(&extras, "extra", "also build repo/name:tag from a static binary, placed at path (name:tag=binary@/path); repeatable")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	if *mailfleet {
		for _, s := range images.Specs {
			path := filepath.Join(*out, s.Name+".tar")
			if err := images.Build(s, filepath.Join(*bin, s.Name), *ca, *repo, *tag, path); err != nil {
				fail(fmt.Errorf("%s: %w", s.Name, err))
			}
			fmt.Println(path)
		}
	}
	for _, e := range extras {
		path := filepath.Join(*out, e.spec.Name+".tar")
		if err := images.Build(e.spec, e.bin, *ca, *repo, e.tag, path); err != nil {
			fail(fmt.Errorf("%s: %w", e.spec.Name, err))
		}
		fmt.Println(path)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "build-images:", err)
	os.Exit(1)
}
