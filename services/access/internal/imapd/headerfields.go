package imapd

import (
	"bytes"

	"github.com/emersion/go-imap/v2"
)

// headerEnd returns where a message's header ends: after the blank line
// that separates it from the body (CRLF CRLF, or bare LF LF as stored), or
// the whole input if there is none.
func headerEnd(msg []byte) int {
	for i := 0; i < len(msg); {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			return len(msg)
		}
		line := msg[i : i+j+1]
		i += j + 1
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return i
		}
	}
	return len(msg)
}

// headerFields answers HEADER.FIELDS (names) or, with not, HEADER.FIELDS.NOT
// (RFC 9051 6.4.5): the header's fields whose names are (or are not) in
// the list, compared case-insensitively, each with its continuation lines,
// as stored, then the blank line that ends a header.
func headerFields(header []byte, names []string, not bool) []byte {
	want := func(name []byte) bool {
		for _, n := range names {
			if bytes.EqualFold(name, []byte(n)) {
				return !not
			}
		}
		return not
	}
	var out bytes.Buffer
	keep := false
	for i := 0; i < len(header); {
		j := bytes.IndexByte(header[i:], '\n')
		end := len(header)
		if j >= 0 {
			end = i + j + 1
		}
		line := header[i:end]
		i = end
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // the blank line
		}
		if line[0] != ' ' && line[0] != '\t' {
			// A new field; a line without a colon is no field (kept with
			// nothing: it names nothing a client can ask for).
			colon := bytes.IndexByte(line, ':')
			keep = colon > 0 && want(bytes.TrimRight(line[:colon], " \t"))
		}
		if keep {
			out.Write(line)
		}
	}
	out.WriteString("\r\n")
	return out.Bytes()
}

// messageSection answers a BODY section without a part number from a
// loaded message (or its header alone): HEADER, HEADER.FIELDS[.NOT], TEXT
// or the whole message, then its <partial>.
func messageSection(msg []byte, bs *imap.FetchItemBodySection) []byte {
	hdrEnd := headerEnd(msg)
	var data []byte
	switch {
	case len(bs.HeaderFields) > 0:
		data = headerFields(msg[:hdrEnd], bs.HeaderFields, false)
	case len(bs.HeaderFieldsNot) > 0:
		data = headerFields(msg[:hdrEnd], bs.HeaderFieldsNot, true)
	case bs.Specifier == imap.PartSpecifierHeader:
		data = msg[:hdrEnd]
	case bs.Specifier == imap.PartSpecifierText:
		data = msg[hdrEnd:]
	default:
		data = msg
	}
	off, n := partialRange(bs.Partial, uint64(len(data)))
	return data[off : off+n]
}
