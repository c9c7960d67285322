package blobstore

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// attachmentXattr is the extended attribute that keeps an fs object's
// attachment: written on the temporary file before its fsync and rename,
// so it is as durable as the body and appears with it.
const attachmentXattr = "user.mailfleet.attachment"

// maxXattrAttachment bounds an attachment kept in the attribute: ext4 keeps
// all of a file's attributes in one block (4 KiB), XFS up to 64 KiB.
const maxXattrAttachment = 3000

func setAttachment(f *os.File, a []byte) error {
	return unix.Fsetxattr(int(f.Fd()), attachmentXattr, a, 0)
}

// getAttachment returns the attribute, nil if the file has none.
func getAttachment(path string) ([]byte, error) {
	buf := make([]byte, maxXattrAttachment)
	n, err := unix.Getxattr(path, attachmentXattr, buf)
	switch {
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return buf[:n], nil
}
