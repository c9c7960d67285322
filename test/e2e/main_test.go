// Package e2e drives a whole Mailfleet (processes built from this repository,
// real etcd, real MinIO) through public protocols only.
package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailfleet/mailfleet/services/storage/testing/engines"
	"github.com/mailfleet/mailfleet/test/cluster"
)

var (
	binDir      string
	minioServer *engines.MinIO
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mailfleet-e2e-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if binDir, err = cluster.Binaries(filepath.Join(dir, "bin")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if minioServer, err = engines.StartMinIO(filepath.Join(dir, "minio")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer minioServer.Stop()
	return m.Run()
}
