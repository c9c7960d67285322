// Package blobstore stores message bodies: immutable objects, written once,
// read whole or by byte range, deleted only by the sweeper. Two drivers pass one
// conformance suite (blobstoretest): "s3" for any S3-compatible object store
// (production) and "fs" for a local directory (single node and development).
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrNotFound is returned for a key that holds no object.
var ErrNotFound = errors.New("blobstore: object not found")

// Info describes one stored object.
type Info struct {
	Key      string
	Size     int64
	Modified time.Time
}

// Store is a body store. Implementations are safe for concurrent use.
type Store interface {
	// Put streams r into a new object at key and returns its size. Memory use
	// does not grow with the object's size. Once Put returns nil the object is
	// durable; a failed Put leaves no object behind.
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	// PutAttached is Put that can also keep a small byte string with the
	// object, in the same write (S3 user metadata, an fs file's extended
	// attribute), saving a second object. attach is called once r has been
	// read to its end, before the object is written, and only by a driver
	// that can keep its result here (not an S3 body too large for one
	// request, not an fs driver on a file system without user attributes);
	// attached reports whether it was kept (false also when it was too long).
	PutAttached(ctx context.Context, key string, r io.Reader, attach func() []byte) (size int64, attached bool, err error)
	// Attachment returns what PutAttached kept with the object at key, nil
	// if nothing, or ErrNotFound if there is no object.
	Attachment(ctx context.Context, key string) ([]byte, error)
	// Attaches reports whether PutAttached can keep an attachment at all
	// (false: it never calls attach, so the caller can store what it would
	// have attached elsewhere, at the same time).
	Attaches() bool
	// Get opens the object at key from offset on, at most length bytes
	// (length 0 = to the end). ErrNotFound if there is no object.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Stat describes the object at key, or returns ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the object at key; deleting a missing object is no error.
	Delete(ctx context.Context, key string) error
	// List calls fn for every object, in no particular order, until fn
	// returns an error.
	List(ctx context.Context, fn func(Info) error) error
	// Ping checks that the store answers (for readiness).
	Ping(ctx context.Context) error
}

// ValidKey reports whether key is acceptable to every driver: slash-separated
// segments of letters, digits, '-', '_' and '.', none of them "." or "..".
func ValidKey(key string) error {
	if key == "" || len(key) > 512 {
		return fmt.Errorf("blobstore: invalid key length %d", len(key))
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("blobstore: invalid key %q", key)
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				return fmt.Errorf("blobstore: invalid key %q", key)
			}
		}
	}
	return nil
}
