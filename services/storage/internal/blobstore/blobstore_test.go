package blobstore_test

import (
	"bytes"
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

// The S3 driver keeps a small attachment in the body's own PUT (one request
// per message instead of two), and none with a multipart body, whose
// metadata is sent before the body is read.
func TestS3KeepsSmallAttachmentsInTheBodysPut(t *testing.T) {
	ctx := context.Background()
	bucket, err := minioServer.NewBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := blobstore.NewS3(blobstore.S3Config{
		Endpoint: minioServer.Endpoint, AccessKey: minioServer.AccessKey, SecretKey: minioServer.SecretKey,
		Bucket: bucket, PartSize: 5 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	summary := bytes.Repeat([]byte{0, 1, 2, 0xfe, 0xff}, 250) // 1 250 bytes, the size of a long summary
	_, attached, err := s.PutAttached(ctx, "small", bytes.NewReader([]byte("body")), func() []byte { return summary })
	if err != nil || !attached {
		t.Fatalf("PutAttached of a small body = attached %v, %v", attached, err)
	}
	if got, err := s.Attachment(ctx, "small"); err != nil || !bytes.Equal(got, summary) {
		t.Fatalf("Attachment = %d bytes, %v", len(got), err)
	}
	big := bytes.NewReader(make([]byte, 2<<20))
	_, attached, err = s.PutAttached(ctx, "big", big, func() []byte {
		t.Error("attach called for a multipart body")
		return summary
	})
	if err != nil || attached {
		t.Fatalf("PutAttached of a 2 MiB body = attached %v, %v", attached, err)
	}
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
