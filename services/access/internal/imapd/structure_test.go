package imapd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailfleet/mailfleet/pkg/mailcorpus"
	"github.com/mailfleet/mailfleet/pkg/mimetree"
)

// TestBodyStructureMatchesGoIMAP checks that the stored tree answers
// BODYSTRUCTURE as go-imap's ExtractBodyStructure (what FETCH used to
// compute from the whole message) does, on realistic mail including the
// corpus's broken kinds. Deliberate differences, each where go-imap is
// wrong, are applied to go-imap's answer before comparing (see goIMAPFixed):
//
//   - A part without Content-Type gets the parameter charset=us-ascii:
//     RFC 2045 5.2 makes "text/plain; charset=us-ascii" the default and
//     RFC 9051 7.5.2 reports the body parameters; go-imap says NIL.
//   - A header line that is no field (no colon: an mbox "From " line, stray
//     text) is skipped: the header ends at its empty line (RFC 5322 2.1, and
//     RFC 9051 6.4.5's TEXT is what follows the header). go-imap ends the
//     header at that line and counts the remaining fields as body, losing
//     Content-Type. Such messages are compared with go-imap's answer for the
//     message without that line (which is only ever in the top-level header,
//     so no size in BODYSTRUCTURE changes).
//
// The comparison is otherwise of what goes on the wire: encodings are
// written lower case with "" as 7bit, empty and absent lists alike as NIL,
// an envelope's absent Sender and Reply-To as From (RFC 9051 7.5.2; go-imap
// applies that when writing), and envelope dates as instants — nested
// envelopes are converted like ENVELOPE (toIMAPEnvelope), which gives the
// date in UTC where go-imap keeps the sender's zone.
func TestBodyStructureMatchesGoIMAP(t *testing.T) {
	gen := mailcorpus.NewWithOptions(mailcorpus.Options{Seed: 1, MaxSize: 64 << 10})
	repaired := 0
	for i := range 2000 {
		msg := gen.Message(i)
		tree, err := mimetree.Parse(bytes.NewReader(msg))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		got := normalize(bodyStructure(tree))

		ref := msg
		if fixed, ok := mailcorpus.WithoutStrayHeaderLines(msg); ok {
			if k := gen.Kind(i); k != mailcorpus.KindBrokenNoColon {
				t.Errorf("message %d (%v): header lines that are no fields", i, k)
			}
			ref = fixed
			repaired++
		}
		want := normalize(goIMAPFixed(withoutEmptyMultiparts(imapserver.ExtractBodyStructure(bytes.NewReader(ref)))))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("message %d (%v): BODYSTRUCTURE differs from go-imap's\n%s", i, gen.Kind(i), diff(got, want))
		}
	}
	if repaired == 0 {
		t.Error("no message with a stray header line: the corpus no longer tests that difference")
	}
}

// goIMAPFixed applies the deliberate differences to go-imap's answer.
func goIMAPFixed(bs imap.BodyStructure) imap.BodyStructure {
	switch b := bs.(type) {
	case *imap.BodyStructureMultiPart:
		for _, c := range b.Children {
			goIMAPFixed(c)
		}
	case *imap.BodyStructureSinglePart:
		// A nil map (not an empty one) is go-message's answer for no Content-Type.
		if b.Type == "text" && b.Subtype == "plain" && b.Params == nil {
			b.Params = map[string]string{"charset": "us-ascii"}
		}
		if b.MessageRFC822 != nil {
			goIMAPFixed(b.MessageRFC822.BodyStructure)
		}
	}
	return bs
}

// normalize rewrites bs into the form the wire gives it, in place.
func normalize(bs imap.BodyStructure) imap.BodyStructure {
	switch b := bs.(type) {
	case *imap.BodyStructureMultiPart:
		for _, c := range b.Children {
			normalize(c)
		}
		if e := b.Extended; e != nil {
			e.Params = nilIfEmpty(e.Params)
			normalizeDisposition(e.Disposition)
			if len(e.Language) == 0 {
				e.Language = nil
			}
		}
	case *imap.BodyStructureSinglePart:
		b.Params = nilIfEmpty(b.Params)
		b.Encoding = strings.ToLower(b.Encoding)
		if b.Encoding == "" {
			b.Encoding = "7bit"
		}
		if e := b.Extended; e != nil {
			normalizeDisposition(e.Disposition)
			if len(e.Language) == 0 {
				e.Language = nil
			}
		}
		if m := b.MessageRFC822; m != nil {
			normalize(m.BodyStructure)
			m.Envelope = normalizeEnvelope(m.Envelope)
		}
	}
	return bs
}

func normalizeDisposition(d *imap.BodyStructureDisposition) {
	if d != nil {
		d.Params = nilIfEmpty(d.Params)
	}
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func normalizeEnvelope(e *imap.Envelope) *imap.Envelope {
	if e == nil {
		e = &imap.Envelope{}
	}
	n := *e
	if n.Sender == nil {
		n.Sender = n.From
	}
	if n.ReplyTo == nil {
		n.ReplyTo = n.From
	}
	for _, l := range []*[]imap.Address{&n.From, &n.Sender, &n.ReplyTo, &n.To, &n.Cc, &n.Bcc} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if len(n.InReplyTo) == 0 {
		n.InReplyTo = nil
	}
	if !n.Date.IsZero() {
		n.Date = time.Unix(n.Date.Unix(), int64(n.Date.Nanosecond())).UTC()
	}
	return &n
}

// diff shows both structures as JSON, from the first line that differs.
func diff(got, want imap.BodyStructure) string {
	g, _ := json.MarshalIndent(got, "", "  ")
	w, _ := json.MarshalIndent(want, "", "  ")
	gl, wl := strings.Split(string(g), "\n"), strings.Split(string(w), "\n")
	i := 0
	for i < len(gl) && i < len(wl) && gl[i] == wl[i] {
		i++
	}
	from := max(0, i-8)
	return fmt.Sprintf("first difference at line %d\n--- ours\n%s\n--- go-imap\n%s",
		i+1, strings.Join(gl[from:min(len(gl), i+8)], "\n"), strings.Join(wl[from:min(len(wl), i+8)], "\n"))
}
