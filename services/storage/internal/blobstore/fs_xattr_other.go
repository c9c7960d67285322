//go:build !linux

package blobstore

import (
	"errors"
	"os"
)

// Extended attributes are used on Linux only; elsewhere the fs driver
// keeps no attachment (the caller stores it as an object of its own).
const maxXattrAttachment = 0

func setAttachment(f *os.File, a []byte) error { return errors.ErrUnsupported }

func getAttachment(path string) ([]byte, error) { return nil, nil }
