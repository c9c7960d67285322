package spool

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestSpoolRoundTripsInMemoryAndOnDisk(t *testing.T) {
	for _, size := range []int{10, memoryLimit + 12345} {
		msg := bytes.Repeat([]byte("0123456789abcde\r\n"), size/17+1)
		s := New(t.TempDir())
		if _, err := s.ReadFrom(iotest.OneByteReader(bytes.NewReader(msg))); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			got, _ := io.ReadAll(s.Reader())
			if !bytes.Equal(got, msg) || s.Size() != int64(len(msg)) {
				t.Fatalf("size %d: read %d bytes back, want %d", size, len(got), len(msg))
			}
		}
		s.Close()
	}
}

func TestSpoolRefusesBareLF(t *testing.T) {
	for _, msg := range []string{"a\nb\r\n", "Subject: x\r\n\r\nbody\n.\n", "x\r\r\n\n"} {
		s := New(t.TempDir())
		if _, err := s.ReadFrom(strings.NewReader(msg)); !errors.Is(err, ErrBareLF) {
			t.Fatalf("%q: %v, want ErrBareLF", msg, err)
		}
	}
	s := New(t.TempDir())
	// CR and LF split across reads is a proper CRLF.
	if _, err := s.ReadFrom(iotest.OneByteReader(strings.NewReader("a\r\nb\r\n"))); err != nil {
		t.Fatal(err)
	}
}

func TestSpoolNormalizesWhenAsked(t *testing.T) {
	s := New(t.TempDir())
	s.NormalizeLF = true
	if _, err := s.ReadFrom(iotest.OneByteReader(strings.NewReader("a\nb\r\n\n.\n"))); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(s.Reader())
	if string(got) != "a\r\nb\r\n\r\n.\r\n" {
		t.Fatalf("normalized to %q", got)
	}
}
