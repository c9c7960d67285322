package mimetree

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/emersion/go-message/textproto"

	"github.com/mailfleet/mailfleet/pkg/envelope"
	"github.com/mailfleet/mailfleet/pkg/mailcorpus"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

func corpus() *mailcorpus.Generator {
	return mailcorpus.NewWithOptions(mailcorpus.Options{Seed: 1, MaxSize: 64 << 10})
}

// TestCorpusOffsets checks on realistic mail, broken kinds included, that
// every part's stored ranges hold what go-message reads for that part: the
// parts of a multipart body as its multipart reader yields them (header and
// body), an encapsulated message's header and body as its header reader
// splits them, and the top-level header up to the empty line (as the store
// splits it, envelope.HeaderSize).
func TestCorpusOffsets(t *testing.T) {
	gen := corpus()
	parts := 0
	for i := range 2000 {
		msg := gen.Message(i)
		p, err := Parse(bytes.NewReader(msg))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		hs := envelope.HeaderSize(msg)
		if hs < 0 {
			hs = len(msg)
		}
		if p.HeaderOffset != 0 || p.BodyOffset != uint64(hs) || p.BodyOffset+p.Size != uint64(len(msg)) {
			t.Errorf("message %d (%v): header at %d, body at %d+%d; header size %d, length %d",
				i, gen.Kind(i), p.HeaderOffset, p.BodyOffset, p.Size, hs, len(msg))
			continue
		}
		n, err := checkParts(msg, p)
		if err != nil {
			t.Errorf("message %d (%v): %v", i, gen.Kind(i), err)
		}
		parts += n
	}
	if parts < 2000 {
		t.Errorf("only %d parts checked", parts)
	}
}

// checkParts compares the children of p with go-message's reading of p's
// body, recursively, and returns how many parts it checked.
func checkParts(msg []byte, p *storagev1.BodyPart) (int, error) {
	body := msg[p.BodyOffset : p.BodyOffset+p.Size]
	checked := 0
	switch {
	case p.Type == "multipart":
		boundary := ""
		for _, prm := range p.Params {
			if prm.Name == "boundary" {
				boundary = prm.Value
			}
		}
		mr := textproto.NewMultipartReader(bytes.NewReader(body), boundary)
		for k := 0; ; k++ {
			part, err := mr.NextPart()
			if err != nil {
				if k != len(p.Parts) {
					return checked, fmt.Errorf("%s/%s at %d: go-message finds %d parts, we %d", p.Type, p.Subtype, p.BodyOffset, k, len(p.Parts))
				}
				break
			}
			if k >= len(p.Parts) {
				return checked, fmt.Errorf("%s/%s at %d: go-message finds more than our %d parts", p.Type, p.Subtype, p.BodyOffset, len(p.Parts))
			}
			c := p.Parts[k]
			want, _ := io.ReadAll(part)
			if got := msg[c.BodyOffset : c.BodyOffset+c.Size]; !bytes.Equal(got, want) {
				return checked, fmt.Errorf("part %d of %d: body %.60q…, go-message %.60q…", k+1, p.BodyOffset, got, want)
			}
			h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg[c.HeaderOffset:c.BodyOffset])))
			if err != nil || !sameFields(h, part.Header) {
				return checked, fmt.Errorf("part %d of %d: header %q differs from go-message's (%v)", k+1, p.BodyOffset, msg[c.HeaderOffset:c.BodyOffset], err)
			}
			n, err := checkParts(msg, c)
			checked += 1 + n
			if err != nil {
				return checked, err
			}
		}
	case len(p.Parts) == 1: // message/rfc822
		c := p.Parts[0]
		br := bufio.NewReader(bytes.NewReader(body))
		textproto.ReadHeader(br)
		want, _ := io.ReadAll(br)
		if got := msg[c.BodyOffset : c.BodyOffset+c.Size]; c.HeaderOffset != p.BodyOffset || !bytes.Equal(got, want) {
			return checked, fmt.Errorf("message at %d: header at %d, body %.60q…, go-message %.60q…", p.BodyOffset, c.HeaderOffset, got, want)
		}
		n, err := checkParts(msg, c)
		return checked + 1 + n, err
	}
	return checked, nil
}

func sameFields(a, b textproto.Header) bool {
	fa, fb := a.Fields(), b.Fields()
	for fa.Next() {
		if !fb.Next() || fa.Key() != fb.Key() || fa.Value() != fb.Value() {
			return false
		}
	}
	return !fb.Next()
}

// BenchmarkParse parses the corpus's first 500 messages (about as they come
// in: mostly small, some with large attachments) per iteration.
func BenchmarkParse(b *testing.B) {
	gen := corpus()
	var msgs [][]byte
	var total int64
	for i := range 500 {
		msgs = append(msgs, gen.Message(i))
		total += int64(len(msgs[i]))
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		for _, m := range msgs {
			if _, err := Parse(bytes.NewReader(m)); err != nil {
				b.Fatal(err)
			}
		}
	}
}
