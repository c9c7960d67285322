package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// FS stores each object as a file under root/objects. A Put writes a temporary
// file under root/tmp, fsyncs it, renames it into place and fsyncs the
// directory, so an object is either whole and durable or absent. An
// attachment is an extended attribute of the file (Linux, on a file system
// that has them: ext4, XFS, btrfs, tmpfs), set before the fsync: one file
// per message instead of a body and a summary, half the files and fsyncs.
type FS struct {
	root     string
	attaches bool // the file system keeps extended attributes
}

// NewFS opens (creating if needed) a directory-backed store.
func NewFS(root string) (*FS, error) {
	for _, d := range []string{"objects", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o750); err != nil {
			return nil, err
		}
	}
	s := &FS{root: root}
	s.attaches = s.probeAttachments()
	return s, nil
}

// probeAttachments reports whether a file under root keeps an attachment.
func (s *FS) probeAttachments() bool {
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "probe-*")
	if err != nil {
		return false
	}
	defer os.Remove(f.Name())
	defer f.Close()
	want := []byte("probe")
	if setAttachment(f, want) != nil {
		return false
	}
	got, err := getAttachment(f.Name())
	return err == nil && string(got) == string(want)
}

func (s *FS) path(key string) string {
	return filepath.Join(s.root, "objects", filepath.FromSlash(key))
}

func (s *FS) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	n, _, err := s.PutAttached(ctx, key, r, nil)
	return n, err
}

func (s *FS) PutAttached(ctx context.Context, key string, r io.Reader, attach func() []byte) (int64, bool, error) {
	if err := ValidKey(key); err != nil {
		return 0, false, err
	}
	tmp, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "put-*")
	if err != nil {
		return 0, false, err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	n, err := io.Copy(tmp, ctxReader{ctx, r})
	attached := false
	if err == nil && attach != nil && s.attaches {
		if a := attach(); len(a) > 0 && len(a) <= maxXattrAttachment {
			// A file system that cannot hold this one (ext4 with 1 KiB
			// blocks, an attribute block shared with ACLs: ENOSPC, E2BIG)
			// keeps the body alone; the caller stores the summary apart.
			attached = setAttachment(tmp, a) == nil
		}
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, false, err
	}
	dst := s.path(key)
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, false, err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return 0, false, err
	}
	return n, attached, syncDir(dir)
}

// Attaches is true where the file system keeps extended attributes.
func (s *FS) Attaches() bool { return s.attaches }

// Attachment reads the object's attribute: nil when it has none.
func (s *FS) Attachment(ctx context.Context, key string) ([]byte, error) {
	if _, err := s.Stat(ctx, key); err != nil {
		return nil, err
	}
	return getAttachment(s.path(key))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (s *FS) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
	}
	if length <= 0 {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, length), f}, nil
}

func (s *FS) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, ErrNotFound
	}
	if err != nil {
		return Info{}, err
	}
	return Info{Key: key, Size: fi.Size(), Modified: fi.ModTime()}, nil
}

func (s *FS) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	err := os.Remove(s.path(key))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (s *FS) List(ctx context.Context, fn func(Info) error) error {
	base := filepath.Join(s.root, "objects")
	return filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(base, path)
		if err != nil {
			return err
		}
		return fn(Info{Key: filepath.ToSlash(rel), Size: fi.Size(), Modified: fi.ModTime()})
	})
}

func (s *FS) Ping(ctx context.Context) error {
	fi, err := os.Stat(filepath.Join(s.root, "objects"))
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("blobstore: %s is not a directory", s.root)
	}
	return nil
}

// ctxReader stops a long copy when the context ends (a client that went away).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

var _ Store = (*FS)(nil)

// String names the store in logs.
func (s *FS) String() string { return "fs:" + strings.TrimSuffix(s.root, "/") }
