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

// The header section is bounded in bytes and in fields, counted across
// reads; the body is not.
func TestSpoolBoundsTheHeader(t *testing.T) {
	read := func(maxBytes, maxFields int, msg string) error {
		s := New(t.TempDir())
		s.MaxHeaderBytes, s.MaxHeaderFields = maxBytes, maxFields
		_, err := s.ReadFrom(iotest.OneByteReader(strings.NewReader(msg)))
		return err
	}
	folded := "To: a@x.example,\r\n" + strings.Repeat(" b@x.example,\r\n", 1000) + " c@x.example\r\n"
	big := "Subject: x\r\n" + folded + "\r\n" + strings.Repeat("body line\r\n", 10000)
	if err := read(1000, 0, big); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("a folded field of %d bytes under a 1000-byte limit: %v", len(folded), err)
	}
	if err := read(len(folded)+100, 0, big); err != nil {
		t.Fatalf("the same header within the limit (a long body is fine): %v", err)
	}
	many := strings.Repeat("X-A: 1\r\n", 101) + "\r\nbody\r\n"
	if err := read(0, 100, many); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("101 fields under a limit of 100: %v", err)
	}
	if err := read(0, 101, many); err != nil {
		t.Fatalf("101 fields under a limit of 101: %v", err)
	}
	// Fields are counted in the header only.
	if err := read(0, 2, "A: 1\r\nB: 2\r\n\r\nC: 3\r\nD: 4\r\n"); err != nil {
		t.Fatalf("field-like body lines counted: %v", err)
	}
}
