package mailcorpus

import "bytes"

// WithoutStrayHeaderLines returns msg with the lines of its top-level header
// that are no field dropped: a line without a colon, a field name with
// spaces or controls, a continuation as the first line (with the
// continuation lines of any of these). KindBrokenNoColon messages carry
// such lines; go-message's header reader stops at them, where a server that
// ends the header at its empty line (RFC 5322 2.1) reads on. Tests compare
// such a server's answers with go-message-based references computed on the
// message this returns. changed says whether anything was dropped.
func WithoutStrayHeaderLines(msg []byte) (out []byte, changed bool) {
	dropping := false
	for rest := msg; len(rest) > 0; {
		end := bytes.IndexByte(rest, '\n') + 1
		if end == 0 {
			end = len(rest)
		}
		line := rest[:end]
		rest = rest[end:]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return append(append(out, line...), rest...), changed
		}
		if line[0] == ' ' || line[0] == '\t' {
			dropping = dropping || len(out) == 0
		} else {
			name, _, ok := bytes.Cut(line, []byte(":"))
			name = bytes.Trim(name, " \t")
			dropping = !ok || bytes.ContainsFunc(name, func(r rune) bool { return r < 33 || r > 126 })
		}
		if dropping {
			changed = true
			continue
		}
		out = append(out, line...)
	}
	return out, changed
}
