package imapconn

import "testing"

// RFC 9051 section 6.3.9 and its examples: "*" crosses the hierarchy,
// "%" does not; the reference prefixes the pattern.
func TestMatchList(t *testing.T) {
	for _, tc := range []struct {
		name, ref, pattern string
		want               bool
	}{
		{"INBOX", "", "*", true},
		{"INBOX", "", "inbox", true},
		{"INBOX", "", "%", true},
		{"Work", "", "%", true},
		{"Work/2026", "", "%", false},
		{"Work/2026", "", "*", true},
		{"Work/2026", "", "Work/%", true},
		{"Work/2026/Q1", "", "Work/%", false},
		{"Work/2026/Q1", "", "Work/*", true},
		{"Work/2026/Q1", "", "Work/%/Q1", true},
		{"Work/2026/Q1", "Work", "%/Q1", true},
		{"Work/2026/Q1", "Work/", "*", true},
		{"Sent", "Work", "*", false},
		{"Sent", "Work", "/Sent", true},
		{"Archive", "", "A%e", true},
		{"Archive", "", "A*x", false},
		{"", "", "", true},
		{"Trash", "", "", false},
		{"a%b", "", "a%b", true},
		{"Drafts", "", "*%*%*%", true},
	} {
		if got := MatchList(tc.name, '/', tc.ref, tc.pattern); got != tc.want {
			t.Errorf("MatchList(%q, ref %q, %q) = %v, want %v", tc.name, tc.ref, tc.pattern, got, tc.want)
		}
	}
}
