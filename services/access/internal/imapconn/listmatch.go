package imapconn

import "strings"

// MatchList reports whether the mailbox name matches a LIST reference and
// pattern (RFC 9051 section 6.3.9): the pattern is read relative to the
// reference (joined with the hierarchy delimiter), unless it starts with
// the delimiter; "*" matches any characters, "%" any but the delimiter; the
// name INBOX matches in any case.
func MatchList(name string, delim rune, ref, pattern string) bool {
	d := string(delim)
	full := pattern
	switch {
	case delim != 0 && strings.HasPrefix(pattern, d):
		full = pattern[len(d):]
	case ref != "":
		if delim != 0 && !strings.HasSuffix(ref, d) {
			ref += d
		}
		full = ref + pattern
	}
	if len(full) >= 5 && strings.EqualFold(full[:5], "INBOX") && (len(full) == 5 || strings.HasPrefix(full[5:], d)) {
		full = "INBOX" + full[5:]
	}
	return matchWildcards([]rune(name), []rune(full), delim)
}

// matchWildcards matches name against pattern, by dynamic programming over
// positions (names and patterns are short; no exponential backtracking).
func matchWildcards(name, pattern []rune, delim rune) bool {
	// ok[j] reports whether name[:i] matches pattern[:j], row by row.
	ok := make([]bool, len(pattern)+1)
	ok[0] = true
	for j, p := range pattern {
		ok[j+1] = ok[j] && (p == '*' || p == '%')
	}
	for i := range name {
		prev := ok[0]
		ok[0] = false
		for j, p := range pattern {
			cur := ok[j+1]
			switch p {
			case '*':
				ok[j+1] = ok[j] || cur
			case '%':
				ok[j+1] = ok[j] || (cur && name[i] != delim)
			default:
				ok[j+1] = prev && p == name[i]
			}
			prev = cur
		}
	}
	return ok[len(pattern)]
}
