package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/mailfleet/mailfleet/pkg/mailcorpus"
	"github.com/mailfleet/mailfleet/test/cluster"
)

// Every kind of message in the corpus — MIME of every shape and the broken
// ones (no closing boundary, a boundary never declared, truncated base64, 8-bit
// headers…) — gets its BODYSTRUCTURE, ENVELOPE and exact bytes over IMAP, in
// one FETCH 1:*, on a connection that stays up (RFC 9051 7.5.2: body-type-mpart
// has at least one body; a multipart with no part found gets an empty
// text/plain one instead of the server giving up on the session).
func TestIMAPFetchesEveryCorpusKind(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("corpus@example.test", "corpus-secret")
	gen := mailcorpus.NewWithOptions(mailcorpus.Options{Seed: 7, MaxSize: 256 << 10})
	var bodies [][]byte
	for _, kind := range mailcorpus.Kinds() {
		found := 0
		for i := 0; i < 20000 && found < 2; i++ {
			if gen.Kind(i) == kind {
				bodies = append(bodies, gen.Message(i))
				found++
			}
		}
		if found == 0 {
			t.Fatalf("no message of kind %v in the first 20 000", kind)
		}
	}
	for _, b := range bodies {
		c.Deliver([]string{"corpus@example.test"}, b)
	}
	cl := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, cl, "corpus@example.test", "corpus-secret")
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	body := &imap.FetchItemBodySection{Peek: true}
	msgs, err := cl.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, BodySection: []*imap.FetchItemBodySection{body},
	}).Collect()
	if err != nil {
		t.Fatalf("FETCH 1:* (BODYSTRUCTURE ENVELOPE BODY.PEEK[]): %v", err)
	}
	if len(msgs) != len(bodies) {
		t.Fatalf("FETCH returned %d messages, want %d", len(msgs), len(bodies))
	}
	for i, m := range msgs {
		if m.BodyStructure == nil || m.Envelope == nil {
			t.Fatalf("message %d (kind %v): no BODYSTRUCTURE or ENVELOPE", i+1, kindOf(gen, bodies[i]))
		}
		if got := bodySection(m, body); !bytes.Equal(got, bodies[i]) {
			n := 0
			for n < min(len(got), len(bodies[i])) && got[n] == bodies[i][n] {
				n++
			}
			t.Fatalf("message %d (kind %s): BODY[] differs from what was delivered at byte %d of %d/%d: got %q, want %q", i+1,
				kindOf(gen, bodies[i]), n, len(got), len(bodies[i]), got[max(0, n-20):min(len(got), n+40)], bodies[i][max(0, n-20):min(len(bodies[i]), n+40)])
		}
	}
	if err := cl.Noop().Wait(); err != nil {
		t.Fatalf("the session did not survive: %v", err)
	}
}

// kindOf names the kind of a delivered message, for failure messages.
func kindOf(gen *mailcorpus.Generator, body []byte) string {
	for i := 0; i < 20000; i++ {
		if bytes.Equal(gen.Message(i), body) {
			return gen.Kind(i).String()
		}
	}
	return "?"
}

// Parts are served from the MIME tree stored with each message (RFC 9051
// 6.4.5: "1.2", "3.MIME", and HEADER/TEXT of an encapsulated message): for
// every part of every corpus kind, BODY[part], BODY[part.MIME],
// BODY[part.HEADER] and BODY[part.TEXT] of a message/rfc822 part, and a
// <partial> of each, are the bytes go-imap's reference extraction finds in
// the delivered message; BINARY[part] (RFC 3516) is the part's body with its
// transfer encoding undone and BINARY.SIZE its length.
func TestIMAPFetchesPartsFromTheStoredTree(t *testing.T) {
	c := cluster.Start(t, binDir, minioServer, cluster.Options{Access: 1})
	c.CreateAccount("parts@example.test", "parts-secret")
	gen := mailcorpus.NewWithOptions(mailcorpus.Options{Seed: 11, MaxSize: 256 << 10})
	var bodies [][]byte
	for _, kind := range mailcorpus.Kinds() {
		for i, found := 0, 0; i < 20000 && found < 3; i++ {
			if gen.Kind(i) == kind {
				bodies = append(bodies, gen.Message(i))
				found++
			}
		}
	}
	for _, b := range bodies {
		c.Deliver([]string{"parts@example.test"}, b)
	}
	cl := dialIMAP(t, c.Access[0].IMAPS, nil)
	login(t, cl, "parts@example.test", "parts-secret")
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for i, delivered := range bodies {
		// The reference for a message with header lines that are no fields
		// is go-imap on the message without them: the server ends the
		// header at its empty line (RFC 5322 2.1) where go-imap ends it at
		// the stray line. Part contents do not move.
		orig, _ := mailcorpus.WithoutStrayHeaderLines(delivered)
		seq := imap.SeqSetNum(uint32(i + 1))
		msgs, err := cl.Fetch(seq, &imap.FetchOptions{BodyStructure: &imap.FetchItemBodyStructure{Extended: true}}).Collect()
		if err != nil || len(msgs) != 1 || msgs[0].BodyStructure == nil {
			t.Fatalf("message %d: FETCH BODYSTRUCTURE: %v", i+1, err)
		}
		_, multipart := msgs[0].BodyStructure.(*imap.BodyStructureMultiPart)
		var sections []*imap.FetchItemBodySection
		var binaries []*imap.FetchItemBinarySection
		var sizes []*imap.FetchItemBinarySectionSize
		partSize := map[string]uint32{} // BODYSTRUCTURE's size of each single part
		walkParts(msgs[0].BodyStructure, nil, func(path []int, bs imap.BodyStructure) {
			if sp, ok := bs.(*imap.BodyStructureSinglePart); ok {
				partSize[fmt.Sprint(path)] = sp.Size
			}
			sections = append(sections,
				&imap.FetchItemBodySection{Part: path, Peek: true},
				&imap.FetchItemBodySection{Part: path, Specifier: imap.PartSpecifierMIME, Peek: true},
				&imap.FetchItemBodySection{Part: path, Peek: true, Partial: &imap.SectionPartial{Offset: 3, Size: 50}})
			if sp, ok := bs.(*imap.BodyStructureSinglePart); ok {
				if sp.MessageRFC822 != nil {
					sections = append(sections,
						&imap.FetchItemBodySection{Part: path, Specifier: imap.PartSpecifierHeader, Peek: true},
						&imap.FetchItemBodySection{Part: path, Specifier: imap.PartSpecifierText, Peek: true},
						&imap.FetchItemBodySection{Part: path, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject", "From"}, Peek: true})
				} else {
					binaries = append(binaries, &imap.FetchItemBinarySection{Part: path, Peek: true})
					sizes = append(sizes, &imap.FetchItemBinarySectionSize{Part: path})
				}
			}
		})
		msgs, err = cl.Fetch(seq, &imap.FetchOptions{BodySection: sections, BinarySection: binaries, BinarySectionSize: sizes}).Collect()
		if err != nil || len(msgs) != 1 {
			t.Fatalf("message %d (kind %s): FETCH of %d sections: %v", i+1, kindOf(gen, delivered), len(sections), err)
		}
		for _, s := range sections {
			want := imapserver.ExtractBodySection(bytes.NewReader(orig), s)
			if !multipart && len(s.Part) == 1 && s.Specifier == imap.PartSpecifierMIME {
				// Part 1 of a non-multipart message is the message: its MIME
				// header is the header as delivered, stray lines and all.
				want = delivered[:headerEnd(delivered)]
			}
			if size := partSize[fmt.Sprint(s.Part)]; len(want) == 0 && size > 0 && s.Specifier == imap.PartSpecifierNone &&
				kindOf(gen, delivered) == mailcorpus.KindBrokenNoClosingBoundary.String() {
				// go-imap's extraction gives up on the last part of a multipart
				// whose closing boundary is missing, although its BODYSTRUCTURE
				// lists the part with its size; the server serves the bytes that
				// BODYSTRUCTURE counts.
				whole := msgs[0].FindBodySection(&imap.FetchItemBodySection{Part: s.Part})
				if uint32(len(whole)) != size || !bytes.Contains(orig, whole) {
					t.Fatalf("message %d: BODY[%v] of an unterminated part is %d bytes, want the %d that BODYSTRUCTURE gives", i+1, s.Part, len(whole), size)
				}
				want = whole
				if p := s.Partial; p != nil {
					want = whole[min(int(p.Offset), len(whole)):min(int(p.Offset+p.Size), len(whole))]
				}
			}
			if got := msgs[0].FindBodySection(s); !bytes.Equal(got, want) {
				t.Fatalf("message %d (kind %s): BODY[%v %s] is %d bytes %.80q, want %d bytes %.80q", i+1, kindOf(gen, delivered),
					s.Part, s.Specifier, len(got), got, len(want), want)
			}
			checked++
		}
		for j, s := range binaries {
			raw := imapserver.ExtractBodySection(bytes.NewReader(orig), &imap.FetchItemBodySection{Part: s.Part})
			if len(raw) == 0 && partSize[fmt.Sprint(s.Part)] > 0 && kindOf(gen, delivered) == mailcorpus.KindBrokenNoClosingBoundary.String() {
				raw = msgs[0].FindBodySection(&imap.FetchItemBodySection{Part: s.Part}) // checked above
			}
			mime := imapserver.ExtractBodySection(bytes.NewReader(orig), &imap.FetchItemBodySection{Part: s.Part, Specifier: imap.PartSpecifierMIME})
			want := decodeTransfer(t, mime, raw)
			got := msgs[0].FindBinarySection(s)
			if !bytes.Equal(got, want) {
				t.Fatalf("message %d (kind %s): BINARY[%v] is %d bytes, want %d", i+1, kindOf(gen, delivered), s.Part, len(got), len(want))
			}
			if size, ok := msgs[0].FindBinarySectionSize(sizes[j].Part); !ok || size != uint32(len(want)) {
				t.Fatalf("message %d: BINARY.SIZE[%v] = %d (answered: %v), want %d", i+1, s.Part, size, ok, len(want))
			}
			checked++
		}
	}
	t.Logf("%d sections of %d messages checked", checked, len(bodies))
}

// walkParts calls fn for every part of a BODYSTRUCTURE with its part number.
func walkParts(bs imap.BodyStructure, prefix []int, fn func([]int, imap.BodyStructure)) {
	switch b := bs.(type) {
	case *imap.BodyStructureMultiPart:
		for i, child := range b.Children {
			path := append(append([]int{}, prefix...), i+1)
			fn(path, child)
			walkNested(child, path, fn)
		}
	default:
		if len(prefix) == 0 {
			fn([]int{1}, bs)
			walkNested(bs, []int{1}, fn)
		}
	}
}

// walkNested descends into a part's own parts: a multipart's children, or
// an encapsulated message's parts.
func walkNested(bs imap.BodyStructure, path []int, fn func([]int, imap.BodyStructure)) {
	switch b := bs.(type) {
	case *imap.BodyStructureMultiPart:
		walkParts(b, path, fn)
	case *imap.BodyStructureSinglePart:
		if b.MessageRFC822 != nil && b.MessageRFC822.BodyStructure != nil {
			if inner, ok := b.MessageRFC822.BodyStructure.(*imap.BodyStructureMultiPart); ok {
				walkParts(inner, path, fn)
			} else {
				p := append(append([]int{}, path...), 1)
				fn(p, b.MessageRFC822.BodyStructure)
			}
		}
	}
}

// decodeTransfer undoes a part's Content-Transfer-Encoding, read from its
// MIME header, as RFC 3516 BINARY does.
func decodeTransfer(t *testing.T, mimeHeader, body []byte) []byte {
	t.Helper()
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(mimeHeader)))
	if err != nil {
		return body
	}
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "base64":
		var clean []byte
		for _, c := range body {
			if c == '=' {
				break
			}
			if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' {
				clean = append(clean, c)
			}
		}
		if len(clean)%4 == 1 {
			clean = clean[:len(clean)-1]
		}
		out, _ := base64.RawStdEncoding.DecodeString(string(clean))
		return out
	case "quoted-printable":
		out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		return out
	}
	return body
}

// headerEnd is the length of msg's header, its empty line included.
func headerEnd(msg []byte) int {
	for i := 0; i < len(msg); {
		end := bytes.IndexByte(msg[i:], '\n')
		if end < 0 {
			return len(msg)
		}
		line := msg[i : i+end+1]
		i += end + 1
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return i
		}
	}
	return len(msg)
}
