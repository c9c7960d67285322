package blobstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config configures the S3 driver.
type S3Config struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	Bucket    string
	Region    string
	// Prefix is prepended to every key (e.g. a cell's name), without a leading slash.
	Prefix string
	UseTLS bool
	// PartSize is the multipart part size for bodies larger than one part; it
	// bounds the memory of one upload (S3's minimum is 5 MiB).
	PartSize uint64
	// CreateBucket makes Ping create a missing bucket instead of reporting it
	// (for a bundled object store that starts empty).
	CreateBucket bool
}

// S3 stores each object in an S3-compatible bucket through minio-go.
type S3 struct {
	client       *minio.Client
	bucket       string
	region       string
	prefix       string
	partSize     uint64
	createBucket bool
}

// singlePutMax is the largest body sent as one PUT. Bodies up to it are
// buffered (bounded memory) so that small messages avoid minio-go's multipart
// path, which allocates a whole part per upload.
const singlePutMax = 1 << 20

// putBuffers hold a body of up to singlePutMax bytes (and one more, to see
// whether it ends there) while it is sent as one PUT.
var putBuffers = sync.Pool{New: func() any { b := make([]byte, singlePutMax+1); return &b }}

// NewS3 connects to the object store; it does not check the bucket (Ping does).
func NewS3(cfg S3Config) (*S3, error) {
	transport, err := minio.DefaultTransport(cfg.UseTLS)
	if err != nil {
		return nil, err
	}
	// Every delivery is a PUT of its own: minio-go's default keeps 16 idle
	// connections per host, so with more deliveries in flight each burst
	// closed some and dialled (and, with TLS, handshook) them again.
	transport.MaxIdleConnsPerHost = transport.MaxIdleConns
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:    cfg.UseTLS,
		Region:    cfg.Region,
		Transport: transport,
	})
	if err != nil {
		return nil, err
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = 8 << 20
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &S3{client: client, bucket: cfg.Bucket, region: cfg.Region, prefix: prefix, partSize: cfg.PartSize, createBucket: cfg.CreateBucket}, nil
}

// Client exposes the minio client (tests create buckets with it).
func (s *S3) Client() *minio.Client { return s.client }

func (s *S3) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	n, _, err := s.PutAttached(ctx, key, r, nil)
	return n, err
}

// attachmentHeader is the user metadata field (x-amz-meta-attachment) that
// keeps an attachment, base64-encoded.
const attachmentHeader = "Attachment"

// maxAttachmentEncoded bounds an attachment as sent: S3 allows 2 KB of user
// metadata per object, names included.
const maxAttachmentEncoded = 2000

func (s *S3) PutAttached(ctx context.Context, key string, r io.Reader, attach func() []byte) (int64, bool, error) {
	if err := ValidKey(key); err != nil {
		return 0, false, err
	}
	// Most bodies are far smaller than singlePutMax: a pooled buffer saves
	// allocating (and clearing) a megabyte per message.
	buf := putBuffers.Get().(*[]byte)
	head := *buf
	n, err := io.ReadFull(r, head)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		// The whole body fits one PUT, which can carry the attachment.
		opts := minio.PutObjectOptions{ContentType: "message/rfc822"}
		attached := false
		if attach != nil {
			if a := attach(); len(a) > 0 && base64.StdEncoding.EncodedLen(len(a)) <= maxAttachmentEncoded {
				opts.UserMetadata = map[string]string{attachmentHeader: base64.StdEncoding.EncodeToString(a)}
				attached = true
			}
		}
		info, err := s.client.PutObject(ctx, s.bucket, s.prefix+key, bytes.NewReader(head[:n]), int64(n), opts)
		if err == nil {
			// After a failed request the transport may still be reading
			// the buffer: only a finished one goes back to the pool.
			putBuffers.Put(buf)
		}
		return info.Size, attached && err == nil, err
	case err != nil:
		putBuffers.Put(buf)
		return 0, false, err
	}
	// Larger: stream it in parts of PartSize; minio-go aborts the multipart
	// upload on error, so no partial object is left. (Its buffer is not
	// returned to the pool: a few large bodies cost an allocation each.)
	// Metadata goes with the first request, before the body is read, so
	// nothing is attached.
	info, err := s.client.PutObject(ctx, s.bucket, s.prefix+key, io.MultiReader(bytes.NewReader(head[:n]), r), -1,
		minio.PutObjectOptions{ContentType: "message/rfc822", PartSize: s.partSize})
	return info.Size, false, err
}

// Attaches is true: user metadata keeps it (bodies up to singlePutMax).
func (s *S3) Attaches() bool { return true }

func (s *S3) Attachment(ctx context.Context, key string) ([]byte, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	oi, err := s.client.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return nil, mapS3Error(err)
	}
	v, ok := oi.UserMetadata[attachmentHeader]
	if !ok {
		return nil, nil
	}
	a, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("blobstore: attachment of %s: %w", key, err)
	}
	return a, nil
}

func (s *S3) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	opts := minio.GetObjectOptions{}
	if offset > 0 || length > 0 {
		end := int64(0)
		if length > 0 {
			end = offset + length - 1
		}
		if err := opts.SetRange(offset, end); err != nil {
			return nil, err
		}
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.prefix+key, opts)
	if err != nil {
		return nil, mapS3Error(err)
	}
	// GetObject is lazy: Stat sends the request and reports a missing object.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		if isInvalidRange(err) {
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
		return nil, mapS3Error(err)
	}
	return obj, nil
}

func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	oi, err := s.client.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, mapS3Error(err)
	}
	return Info{Key: key, Size: oi.Size, Modified: oi.LastModified}, nil
}

func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	return mapS3Error(s.client.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{}))
}

func (s *S3) List(ctx context.Context, fn func(Info) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops minio-go's listing goroutine if fn stops early
	for oi := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, Recursive: true}) {
		if oi.Err != nil {
			return oi.Err
		}
		if err := fn(Info{Key: strings.TrimPrefix(oi.Key, s.prefix), Size: oi.Size, Modified: oi.LastModified}); err != nil {
			return err
		}
	}
	return nil
}

func (s *S3) Ping(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	if !s.createBucket {
		return errors.New("blobstore: bucket " + s.bucket + " does not exist")
	}
	// Several storage pods may race to create it; losing the race is fine.
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region})
	if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("blobstore: create bucket %s: %w", s.bucket, err)
	}
	return nil
}

func mapS3Error(err error) error {
	if err == nil {
		return nil
	}
	switch minio.ToErrorResponse(err).Code {
	case minio.NoSuchKey, "NoSuchObject":
		return ErrNotFound
	}
	return err
}

func isInvalidRange(err error) bool {
	return minio.ToErrorResponse(err).Code == "InvalidRange"
}

var _ Store = (*S3)(nil)
