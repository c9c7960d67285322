package blobstore_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mailfleet/mailfleet/services/storage/internal/blobstore"
)

// On Linux the fs driver keeps an attachment (a body's summary) in an
// extended attribute of the body's own file, so a message is one file and
// one fsync, not two; where the file system has no user attributes it says
// so (Attaches false) and the caller stores the summary as an object.
func TestFSKeepsAttachmentsInTheBodysFile(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	// What the file system under root can do, asked without the driver.
	probe := filepath.Join(root, "probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fsHasXattrs := unix.Setxattr(probe, "user.test", []byte("x"), 0) == nil

	s, err := blobstore.NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	if s.Attaches() != fsHasXattrs {
		t.Fatalf("Attaches() = %v on a file system whose user attributes work: %v", s.Attaches(), fsHasXattrs)
	}
	summary := bytes.Repeat([]byte("summary\x00\xff"), 200) // 2 000 bytes, as large as S3 takes
	_, attached, err := s.PutAttached(ctx, "20261130/abc", bytes.NewReader([]byte("body\r\n")), func() []byte { return summary })
	if err != nil || attached != fsHasXattrs {
		t.Fatalf("PutAttached = attached %v, %v; want attached %v", attached, err, fsHasXattrs)
	}
	files := 0
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && path != probe {
			files++
		}
		return nil
	})
	if files != 1 {
		t.Errorf("%d files after one PutAttached, want the body's file alone", files)
	}
	got, err := s.Attachment(ctx, "20261130/abc")
	if err != nil {
		t.Fatal(err)
	}
	if fsHasXattrs && !bytes.Equal(got, summary) || !fsHasXattrs && got != nil {
		t.Fatalf("Attachment = %d bytes, want %d", len(got), len(summary))
	}
	// Too long for one attribute block: not attached, the caller keeps it.
	_, attached, err = s.PutAttached(ctx, "20261130/big", bytes.NewReader([]byte("body\r\n")), func() []byte { return make([]byte, 5000) })
	if err != nil || attached {
		t.Fatalf("PutAttached of a 5 000-byte attachment = attached %v, %v", attached, err)
	}
	if got, err := s.Attachment(ctx, "20261130/big"); got != nil || err != nil {
		t.Fatalf("Attachment of a body whose attachment was refused = %q, %v", got, err)
	}
}
