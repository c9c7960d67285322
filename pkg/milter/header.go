package milter

import (
	"bufio"
	"io"
	"strings"

	gomilter "github.com/d--j/go-milter"
)

// field is one header field as received, folding and CRLFs included.
type field struct {
	// name is "" for a line that is no field (no colon): it is kept in
	// place but neither sent to the filter nor counted in its indexes.
	name string
	raw  string
}

// value is what the filter is sent: the text after the colon, unfolding
// left to the filter, without the leading blanks (SMFIP_HDR_LEADSPC is not
// negotiated) and the final CRLF.
func (f field) value() string {
	_, v, _ := strings.Cut(f.raw, ":")
	return strings.TrimLeft(strings.TrimRight(v, "\r\n"), " \t")
}

// readHeader splits msg into its header fields and the body after the empty
// line (which belongs to neither: the milter body starts after it).
func readHeader(msg io.Reader) ([]field, io.Reader, error) {
	br := bufio.NewReader(msg)
	var fields []field
	for {
		line, err := br.ReadString('\n')
		if strings.TrimRight(line, "\r\n") == "" {
			if err != nil && err != io.EOF {
				return nil, nil, err
			}
			return fields, br, nil // the empty line, or the end of a header-only message
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1].raw += line
		} else {
			name, _, ok := strings.Cut(line, ":")
			if !ok || !validName(name) {
				name = ""
			}
			fields = append(fields, field{name: name, raw: line})
		}
		if err == io.EOF {
			// The last field ended without CRLF: end it, so that what
			// follows (a field we add) stays a field of its own.
			fields[len(fields)-1].raw += "\r\n"
			return fields, br, nil
		}
		if err != nil {
			return nil, nil, err
		}
	}
}

// Rewrite returns msg with the filter's header changes made and its body
// replaced if the filter sent one, and size moved by what they added or
// took away; msg itself when there are none. msg must be the message given
// to Data.
func (v Verdict) Rewrite(msg io.Reader, size int64) (io.Reader, int64, error) {
	if len(v.changes) == 0 && !v.replaced {
		return msg, size, nil
	}
	fields, body, err := readHeader(msg)
	if err != nil {
		return nil, 0, err
	}
	before := 2 // the empty line
	for _, f := range fields {
		before += len(f.raw)
	}
	var header strings.Builder
	for _, f := range applyChanges(fields, v.changes) {
		header.WriteString(f.raw)
	}
	header.WriteString("\r\n")
	size += int64(header.Len() - before)
	if v.replaced {
		// Lines end in CRLF in the store, whatever the filter sent.
		newBody := strings.ReplaceAll(strings.ReplaceAll(string(v.body), "\r\n", "\n"), "\n", "\r\n")
		return strings.NewReader(header.String() + newBody), int64(header.Len() + len(newBody)), nil
	}
	return io.MultiReader(strings.NewReader(header.String()), body), size, nil
}

// applyChanges carries out SMFIR_ADDHEADER (append), SMFIR_INSHEADER
// (insert after the index-th field, 0 being the top: smfi_insheader) and
// SMFIR_CHGHEADER (the index-th field of that name, 1-based; an empty value
// deletes it, an index past the last adds one: smfi_chgheader), in the
// order the filter sent them. Deleted fields leave the count at once, as in
// Postfix. Changes with a name that is no field name are ignored.
func applyChanges(fields []field, changes []gomilter.ModifyAction) []field {
	for _, c := range changes {
		if !validName(c.HeaderName) {
			continue
		}
		f := field{name: c.HeaderName, raw: c.HeaderName + ": " + foldValue(c.HeaderValue) + "\r\n"}
		switch c.Type {
		case gomilter.ActionAddHeader:
			fields = append(fields, f)
		case gomilter.ActionInsertHeader:
			at, seen := len(fields), 0
			for i := range fields {
				if seen == int(c.HeaderIndex) {
					at = i
					break
				}
				if fields[i].name != "" {
					seen++
				}
			}
			fields = append(fields[:at], append([]field{f}, fields[at:]...)...)
		case gomilter.ActionChangeHeader:
			at, seen := -1, 0
			for i := range fields {
				if strings.EqualFold(fields[i].name, c.HeaderName) {
					if seen++; seen == int(c.HeaderIndex) {
						at = i
						break
					}
				}
			}
			switch {
			case at >= 0 && c.HeaderValue == "":
				fields = append(fields[:at], fields[at+1:]...)
			case at >= 0:
				fields[at] = f
			case c.HeaderValue != "":
				fields = append(fields, f)
			}
		}
	}
	return fields
}

// validName is RFC 5322 2.2's field-name: printable ASCII but the colon.
func validName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] > '~' || name[i] == ':' {
			return false
		}
	}
	return true
}

// foldValue makes a filter's value safe to write as a field: line breaks
// (filters send LF or CRLF) become CRLF followed by a blank, so no line of
// it can end the header or start a field of its own, and other control
// characters go.
func foldValue(v string) string {
	var lines []string
	for _, line := range strings.Split(v, "\n") {
		line = strings.Map(func(r rune) rune {
			if r < 0x20 && r != '\t' || r == 0x7f {
				return -1
			}
			return r
		}, line)
		if len(lines) > 0 {
			if strings.TrimSpace(line) == "" {
				continue
			}
			if line[0] != ' ' && line[0] != '\t' {
				line = "\t" + line
			}
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\r\n")
}
