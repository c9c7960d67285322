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

// Submission's spool makes every line ending CRLF: bare LFs and bare CRs
// alike, whether CR and LF arrive in one read or apart, so that neither
// `\n.\n` nor `\r.\r\n` (SMTP smuggling) can reach the next hop.
func TestSpoolNormalizesWhenAsked(t *testing.T) {
	cases := map[string]string{
		"a\nb\r\n\n.\n":     "a\r\nb\r\n\r\n.\r\n",
		"a\r\n\r.\r\nb\r\n": "a\r\n\r\n.\r\nb\r\n",
		"x\ry\r\r\nz":       "x\r\ny\r\n\r\nz",
		"end\r":             "end\r\n",
		"\n\r\n\r":          "\r\n\r\n\r\n",
	}
	for in, want := range cases {
		for _, oneByte := range []bool{false, true} {
			s := New(t.TempDir())
			s.NormalizeLineEndings = true
			var r io.Reader = strings.NewReader(in)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			if _, err := s.ReadFrom(r); err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(s.Reader())
			if string(got) != want || s.Size() != int64(len(want)) {
				t.Fatalf("%q (one byte at a time: %v) normalized to %q (size %d), want %q", in, oneByte, got, s.Size(), want)
			}
		}
	}
}
