package imapconn

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// testInput makes data of mixed compressibility: repeated command lines,
// text and random bytes.
func testInput(rng *rand.Rand, n int) []byte {
	var b bytes.Buffer
	for b.Len() < n {
		switch rng.IntN(3) {
		case 0:
			b.WriteString("a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])\r\n")
		case 1:
			for range rng.IntN(200) {
				b.WriteString([]string{"the ", "mail ", "server ", "IMAP ", "deflate\r\n"}[rng.IntN(5)])
			}
		default:
			r := make([]byte, rng.IntN(3000))
			for i := range r {
				r[i] = byte(rng.Uint32())
			}
			b.Write(r)
		}
	}
	return b.Bytes()[:n]
}

// TestInflaterRoundTrip decodes what compress/flate writes at every level
// (stored blocks, Huffman only, fixed and dynamic codes, back-references
// across the 32 KiB window), with flushes at random points.
func TestInflaterRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, level := range []int{flate.NoCompression, flate.HuffmanOnly, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression} {
		for _, size := range []int{0, 1, 100, 70_000, 300_000} {
			in := testInput(rng, size)
			var z bytes.Buffer
			w, _ := flate.NewWriter(&z, level)
			for rest := in; len(rest) > 0; {
				n := min(len(rest), 1+rng.IntN(20_000))
				w.Write(rest[:n])
				rest = rest[n:]
				if rng.IntN(2) == 0 {
					w.Flush()
				}
			}
			w.Close()
			out, err := io.ReadAll(newInflater(bufio.NewReaderSize(&z, 4096)))
			if err != nil {
				t.Fatalf("level %d, %d bytes: %v", level, size, err)
			}
			if !bytes.Equal(out, in) {
				t.Fatalf("level %d, %d bytes: decoded %d bytes that differ", level, len(in), len(out))
			}
		}
	}
}

// TestInflaterRefusesCorruptStreams: a reserved block type, a stored block
// whose NLEN does not match, a distance before the stream's start.
func TestInflaterRefusesCorruptStreams(t *testing.T) {
	for name, stream := range map[string][]byte{
		"reserved block type":  {0x07},
		"stored NLEN mismatch": {0x00, 0x05, 0x00, 0x00, 0x00},
		// Fixed block: length code 257 (0000001), distance code 0 (00000)
		// with nothing written yet.
		"distance too far": {0x03, 0x02, 0x00},
	} {
		_, err := io.ReadAll(newInflater(bufio.NewReader(bytes.NewReader(stream))))
		if !errors.Is(err, errCorrupt) {
			t.Errorf("%s: %v, want %v", name, err, errCorrupt)
		}
	}
}

// released serves only the bytes the test has released; asking for more
// is what a server must not do while the client waits for an answer.
type released struct {
	data []byte
}

var errAskedTooEarly = errors.New("read input the client had not sent yet")

func (r *released) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errAskedTooEarly
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestInflaterHandsOnWhatItHasDecoded: RFC 4978 section 4 asks the client
// to flush after each command, and zlib's Z_PARTIAL_FLUSH (what mbsync
// uses) leaves the end of the flush in the client's buffer until its next
// write. Here every command is followed by a sync flush whose last four
// bytes (the empty stored block's LEN and NLEN) are held back until the
// server has answered: the inflater must hand on the whole command
// without asking for them.
func TestInflaterHandsOnWhatItHasDecoded(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.DefaultCompression)
	var commands [][]byte
	var ends []int
	for i := range 200 {
		cmd := testInput(rng, 1+rng.IntN(5000))
		if i%3 == 0 {
			cmd = []byte("a NOOP\r\n")
		}
		commands = append(commands, cmd)
		w.Write(cmd)
		w.Flush()
		ends = append(ends, z.Len())
	}
	stream := z.Bytes()
	src := &released{}
	zr := newInflater(bufio.NewReaderSize(src, 4096))
	br := bufio.NewReaderSize(zr, 4096) // as the connection reads it
	sent := 0
	for i, cmd := range commands {
		// Everything up to this command's flush but its last four bytes.
		src.data = append(src.data, stream[sent:ends[i]-4]...)
		sent = ends[i] - 4
		got := make([]byte, len(cmd))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("command %d (%d bytes): %v", i, len(cmd), err)
		}
		if !bytes.Equal(got, cmd) {
			t.Fatalf("command %d decoded wrong", i)
		}
	}
}
