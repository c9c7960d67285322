package e2e

import (
	"bytes"
	"testing"

	"github.com/emersion/go-imap/v2"

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
