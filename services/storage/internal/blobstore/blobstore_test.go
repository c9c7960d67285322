package blobstore_test

import (
	"context"
	"os"
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
