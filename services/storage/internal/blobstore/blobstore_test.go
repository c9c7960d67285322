package blobstore_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/mailfleet/mailfleet/services/storage/internal/blobstore"
	"github.com/mailfleet/mailfleet/services/storage/internal/blobstore/blobstoretest"
	"github.com/mailfleet/mailfleet/services/storage/testing/engines"
)

var minioServer *engines.MinIO

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "blobstore-minio-")
	if err != nil {
		panic(err)
	}
	minioServer, err = engines.StartMinIO(dir)
	if err != nil {
		panic(err)
	}
	code := m.Run()
	minioServer.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestFSDriver(t *testing.T) {
	blobstoretest.Run(t, func(t *testing.T) blobstore.Store {
		s, err := blobstore.NewFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestS3Driver(t *testing.T) {
	blobstoretest.Run(t, func(t *testing.T) blobstore.Store {
		bucket, err := minioServer.NewBucket(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s, err := blobstore.NewS3(blobstore.S3Config{
			Endpoint: minioServer.Endpoint, AccessKey: minioServer.AccessKey, SecretKey: minioServer.SecretKey,
			Bucket: bucket, Prefix: "cell-a", PartSize: 5 << 20,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestS3PingFailsForMissingBucket(t *testing.T) {
	s, err := blobstore.NewS3(blobstore.S3Config{
		Endpoint: minioServer.Endpoint, AccessKey: minioServer.AccessKey, SecretKey: minioServer.SecretKey,
		Bucket: "no-such-bucket",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); err == nil {
		t.Fatal("Ping succeeded for a missing bucket")
	}
}

// With CreateBucket a bundled, empty object store becomes usable on the first
// readiness check; two storage pods racing to create it both succeed.
func TestS3PingCreatesMissingBucket(t *testing.T) {
	ctx := context.Background()
	open := func() *blobstore.S3 {
		s, err := blobstore.NewS3(blobstore.S3Config{
			Endpoint: minioServer.Endpoint, AccessKey: minioServer.AccessKey, SecretKey: minioServer.SecretKey,
			Bucket: "created-by-ping", CreateBucket: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first, second := open(), open()
	errs := make(chan error, 2)
	go func() { errs <- first.Ping(ctx) }()
	go func() { errs <- second.Ping(ctx) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Ping with CreateBucket: %v", err)
		}
	}
	if _, err := first.Put(ctx, "a/b", strings.NewReader("body")); err != nil {
		t.Fatalf("Put into the created bucket: %v", err)
	}
	if exists, err := first.Client().BucketExists(ctx, "created-by-ping"); err != nil || !exists {
		t.Fatalf("bucket exists = %v, %v", exists, err)
	}
}
