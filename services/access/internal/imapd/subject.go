package imapd

import "strings"

// baseSubject extracts the base subject of a decoded Subject (RFC 5256
// section 2.1) and reports whether a reply or forward marker (subj-refwd,
// a "(fwd)" trailer or a "[fwd: ...]" wrapper) was removed. The result is
// not case-folded; compare it with casemap.
func baseSubject(s string) (string, bool) {
	s = collapseSpace(s) // step 1 (the subject is decoded to UTF-8 already)
	isRe := false
	for {
		// Step 2: subj-trailer = "(fwd)" / WSP, at the end, repeatedly.
		for {
			if strings.HasSuffix(s, " ") {
				s = s[:len(s)-1]
			} else if len(s) >= 5 && strings.EqualFold(s[len(s)-5:], "(fwd)") {
				s, isRe = s[:len(s)-5], true
			} else {
				break
			}
		}
		// Steps 3 to 5: subj-leader, then one subj-blob when something is
		// left after it, until neither applies.
		for {
			if strings.HasPrefix(s, " ") {
				s = s[1:]
				continue
			}
			if n := refwdLeader(s); n > 0 {
				s, isRe = s[n:], true
				continue
			}
			if n := blob(s); n > 0 && n < len(s) {
				s = s[n:]
				continue
			}
			break
		}
		// Step 6: subj-fwd = "[fwd:" subj-base "]": unwrap, back to step 2.
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && s[len(s)-1] == ']' {
			s, isRe = s[5:len(s)-1], true
			continue
		}
		return s, isRe
	}
}

// collapseSpace turns tabs and line breaks into spaces and runs of spaces
// into one.
func collapseSpace(s string) string {
	var b strings.Builder
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteByte(c)
	}
	return b.String()
}

// blob is the length of a subj-blob at the start of s ("[" *BLOBCHAR "]"
// *WSP), or 0.
func blob(s string) int {
	if !strings.HasPrefix(s, "[") {
		return 0
	}
	end := strings.IndexAny(s[1:], "[]")
	if end < 0 || s[1+end] != ']' {
		return 0
	}
	n := end + 2
	for n < len(s) && s[n] == ' ' {
		n++
	}
	return n
}

// refwdLeader is the length of *subj-blob subj-refwd at the start of s, or
// 0 (subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":").
func refwdLeader(s string) int {
	i := 0
	for {
		n := blob(s[i:])
		if n == 0 {
			break
		}
		i += n
	}
	switch rest := s[i:]; {
	case len(rest) >= 3 && strings.EqualFold(rest[:3], "fwd"):
		i += 3
	case len(rest) >= 2 && (strings.EqualFold(rest[:2], "re") || strings.EqualFold(rest[:2], "fw")):
		i += 2
	default:
		return 0
	}
	for i < len(s) && s[i] == ' ' {
		i++
	}
	i += blob(s[i:])
	if i < len(s) && s[i] == ':' {
		return i + 1
	}
	return 0
}

// casemap is the i;ascii-casemap comparator's form of s (RFC 4790 9.2:
// ASCII letters upper-cased, other octets as they are).
func casemap(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'a' && c <= 'z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'a' && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
