// Command build-images builds every Mailfleet image as an OCI tarball from
// the static binaries in --bin (see `make images`).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mailfleet/mailfleet/deploy/images"
)

func main() {
	bin := flag.String("bin", "bin/static", "directory of static (CGO_ENABLED=0) binaries")
	out := flag.String("out", "bin/images", "where the tarballs go")
	repo := flag.String("repo", "mailfleet", "image repository prefix")
	tag := flag.String("tag", "dev", "image tag")
	ca := flag.String("ca", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to include")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, s := range images.Specs {
		path := filepath.Join(*out, s.Name+".tar")
		if err := images.Build(s, filepath.Join(*bin, s.Name), *ca, *repo, *tag, path); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", s.Name, err)
			os.Exit(1)
		}
		fmt.Println(path)
	}
}
