// Package blobstoretest is the conformance suite every blobstore driver passes.
package blobstoretest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/mailfleet/mailfleet/services/storage/internal/blobstore"
)

// Run runs the suite against stores made by newStore (a fresh, empty one per call).
func Run(t *testing.T, newStore func(t *testing.T) blobstore.Store) {
	ctx := context.Background()

	t.Run("PutGetRoundTrip", func(t *testing.T) {
		s := newStore(t)
		body := []byte("From: a@example.test\r\n\r\nhello\r\n")
		n, err := s.Put(ctx, "m/2026/01/01/a1", bytes.NewReader(body))
		if err != nil || n != int64(len(body)) {
			t.Fatalf("Put = %d, %v", n, err)
		}
		if got := readAll(t, s, "m/2026/01/01/a1", 0, 0); !bytes.Equal(got, body) {
			t.Fatalf("Get returned %q, want %q", got, body)
		}
		info, err := s.Stat(ctx, "m/2026/01/01/a1")
		if err != nil || info.Size != int64(len(body)) || info.Modified.IsZero() {
			t.Fatalf("Stat = %+v, %v", info, err)
		}
	})

	t.Run("ByteRanges", func(t *testing.T) {
		s := newStore(t)
		body := []byte("0123456789abcdef")
		mustPut(t, s, "r", body)
		cases := []struct{ off, n int64 }{{0, 4}, {4, 4}, {10, 0}, {15, 1}, {15, 100}, {0, 16}}
		for _, c := range cases {
			end := int64(len(body))
			if c.n > 0 && c.off+c.n < end {
				end = c.off + c.n
			}
			if got := readAll(t, s, "r", c.off, c.n); !bytes.Equal(got, body[c.off:end]) {
				t.Errorf("range %d+%d = %q, want %q", c.off, c.n, got, body[c.off:end])
			}
		}
		if got := readAll(t, s, "r", 16, 0); len(got) != 0 {
			t.Errorf("range past the end returned %q", got)
		}
	})

	t.Run("LargeBodyStreams", func(t *testing.T) {
		s := newStore(t)
		// Larger than one S3 part (5 MiB minimum) so the multipart path runs.
		body := make([]byte, 11<<20+123)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range body {
			body[i] = byte(r.UintN(256))
		}
		mustPut(t, s, "big/one", body)
		if got := readAll(t, s, "big/one", 0, 0); !bytes.Equal(got, body) {
			t.Fatalf("large body differs (got %d bytes, want %d)", len(got), len(body))
		}
		if got := readAll(t, s, "big/one", 6<<20, 10); !bytes.Equal(got, body[6<<20:6<<20+10]) {
			t.Fatalf("range inside the second part differs")
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Get(ctx, "missing/key", 0, 0); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("Get of missing key: %v, want ErrNotFound", err)
		}
		if _, err := s.Stat(ctx, "missing/key"); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("Stat of missing key: %v, want ErrNotFound", err)
		}
	})

	t.Run("DeleteIsIdempotent", func(t *testing.T) {
		s := newStore(t)
		mustPut(t, s, "d/1", []byte("x"))
		for i := 0; i < 2; i++ {
			if err := s.Delete(ctx, "d/1"); err != nil {
				t.Fatalf("Delete #%d: %v", i, err)
			}
		}
		if _, err := s.Stat(ctx, "d/1"); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("object still there after Delete: %v", err)
		}
	})

	t.Run("FailedPutLeavesNothing", func(t *testing.T) {
		s := newStore(t)
		boom := errors.New("client went away")
		for _, size := range []int{100, 7 << 20} {
			r := io.MultiReader(bytes.NewReader(make([]byte, size)), errReader{boom})
			if _, err := s.Put(ctx, "f/1", r); err == nil {
				t.Fatalf("Put of a failing %d-byte reader succeeded", size)
			}
			if _, err := s.Stat(ctx, "f/1"); !errors.Is(err, blobstore.ErrNotFound) {
				t.Fatalf("a failed Put left an object behind: %v", err)
			}
		}
	})

	t.Run("List", func(t *testing.T) {
		s := newStore(t)
		want := map[string]int64{"l/a": 1, "l/b/c": 2, "x.y_z-1": 3}
		for k, n := range want {
			mustPut(t, s, k, make([]byte, n))
		}
		got := map[string]int64{}
		if err := s.List(ctx, func(i blobstore.Info) error { got[i.Key] = i.Size; return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("List = %v, want %v", got, want)
		}
		for k, n := range want {
			if got[k] != n {
				t.Fatalf("List = %v, want %v", got, want)
			}
		}
		stop := errors.New("stop")
		calls := 0
		if err := s.List(ctx, func(blobstore.Info) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("List did not stop at the first error: %v after %d calls", err, calls)
		}
	})

	t.Run("InvalidKeysRefused", func(t *testing.T) {
		s := newStore(t)
		for _, k := range []string{"", "../escape", "a/../../b", "/abs", "a//b", "sp ace", "a/./b"} {
			if _, err := s.Put(ctx, k, bytes.NewReader([]byte("x"))); err == nil {
				t.Errorf("Put accepted key %q", k)
			}
		}
	})

	// PutAttached: what a driver says it kept comes back byte for byte;
	// attach sees the whole body first; a missing object is ErrNotFound.
	t.Run("Attachments", func(t *testing.T) {
		s := newStore(t)
		body := []byte("From: a@example.test\r\n\r\nhello\r\n")
		cases := []struct {
			key        string
			attachment []byte
		}{
			{"att/small", []byte("summary \x00\xff bytes")},
			{"att/too-long", bytes.Repeat([]byte("x"), 4<<10)},
			{"att/none", nil},
		}
		for _, c := range cases {
			r := &countingReader{r: bytes.NewReader(body)}
			called := false
			n, attached, err := s.PutAttached(ctx, c.key, r, func() []byte {
				called = true
				if r.n != len(body) {
					t.Errorf("%s: attach called after %d of %d bytes", c.key, r.n, len(body))
				}
				return c.attachment
			})
			if err != nil || n != int64(len(body)) {
				t.Fatalf("PutAttached %s = %d, %v", c.key, n, err)
			}
			if attached && (!called || c.attachment == nil) {
				t.Errorf("%s: attached without an attachment (attach called: %v)", c.key, called)
			}
			got, err := s.Attachment(ctx, c.key)
			if err != nil {
				t.Fatalf("Attachment %s: %v", c.key, err)
			}
			if want := c.attachment; attached && !bytes.Equal(got, want) || !attached && got != nil {
				t.Errorf("%s: Attachment = %q (attached %v)", c.key, got, attached)
			}
			if got := readAll(t, s, c.key, 0, 0); !bytes.Equal(got, body) {
				t.Errorf("%s: body %q", c.key, got)
			}
		}
		if _, err := s.Attachment(ctx, "att/missing"); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("Attachment of a missing object: %v, want ErrNotFound", err)
		}
		mustPut(t, s, "att/plain", body)
		if got, err := s.Attachment(ctx, "att/plain"); got != nil || err != nil {
			t.Fatalf("Attachment of a plain Put = %q, %v", got, err)
		}
	})

	t.Run("Ping", func(t *testing.T) {
		if err := newStore(t).Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func mustPut(t *testing.T, s blobstore.Store, key string, body []byte) {
	t.Helper()
	if _, err := s.Put(context.Background(), key, bytes.NewReader(body)); err != nil {
		t.Fatalf("Put %s: %v", key, err)
	}
}

func readAll(t *testing.T, s blobstore.Store, key string, off, n int64) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key, off, n)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}
