package envelope

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// RFC 5322 3.6.4: References and In-Reply-To are lists of msg-ids; text
// outside angle brackets (old phrases, comments) is not part of them.
func TestMessageIDs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"<a@x>", []string{"<a@x>"}},
		{"<a@x> <b@x>\t<c@x>", []string{"<a@x>", "<b@x>", "<c@x>"}},
		{"Your message of 1 Jan <a@x> (comment)", []string{"<a@x>"}},
		{"< a@x >", []string{"<a@x>"}},
		{"<> <b@x> <unclosed", []string{"<b@x>"}},
	} {
		if got := MessageIDs(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("MessageIDs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The envelope keeps References' message IDs; a long header keeps the
// last ones (the nearest parents) within the field bound.
func TestParseReferences(t *testing.T) {
	env := Parse([]byte("Subject: x\r\nReferences: <a@x>\r\n <b@x>\r\nIn-Reply-To: <b@x>\r\n\r\n"))
	if env.References != "<a@x> <b@x>" || env.InReplyTo != "<b@x>" {
		t.Fatalf("References %q, In-Reply-To %q", env.References, env.InReplyTo)
	}
	var ids []string
	for i := range 200 {
		ids = append(ids, fmt.Sprintf("<message-%03d@example.org>", i))
	}
	ids = append(ids, "<parent@example.org>")
	got := Parse([]byte("References: " + strings.Join(ids, " ") + "\r\n\r\n")).References
	if len(got) > maxFieldLen || !strings.HasSuffix(got, " <parent@example.org>") || !strings.HasPrefix(got, "<") {
		t.Fatalf("long References kept as %d octets: …%q", len(got), got[max(0, len(got)-60):])
	}
	if env := Parse([]byte("Subject: none\r\n\r\n")); env.References != "" {
		t.Fatalf("no References: %q", env.References)
	}
}
