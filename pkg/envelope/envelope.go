// Package envelope parses the header of a message into IMAP's ENVELOPE (kept in
// the storage tier's summary of each body), leniently: real mail is often malformed, and a
// header that does not parse still yields what can be read. The body itself is
// stored byte for byte; nothing here changes it.
package envelope

import (
	"bytes"
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Limits that keep one index entry well inside etcd's request size.
const (
	maxAddresses = 50
	maxFieldLen  = 1000
)

var decoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// HeaderSize returns the length of the header section of msg (up to and
// including the empty line that ends it), or -1 if msg holds no complete header.
// A message with no empty line is all header.
func HeaderSize(msg []byte) int {
	for i := 0; i < len(msg); {
		end := bytes.IndexByte(msg[i:], '\n')
		if end < 0 {
			return -1
		}
		line := msg[i : i+end+1]
		i += end + 1
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return i
		}
	}
	return -1
}

// Fields splits a header section into (name, unfolded value) pairs, in order.
// Lines without a colon are skipped.
func Fields(header []byte) [][2]string {
	var fields [][2]string
	for _, line := range bytes.SplitAfter(header, []byte("\n")) {
		text := strings.TrimRight(string(line), "\r\n")
		if text == "" {
			break
		}
		if (text[0] == ' ' || text[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1][1] += " " + strings.TrimSpace(text)
			continue
		}
		name, value, ok := strings.Cut(text, ":")
		if !ok || strings.TrimSpace(name) == "" {
			continue
		}
		fields = append(fields, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
	}
	return fields
}

// Parse builds the envelope from a header section. The first occurrence of each
// field counts.
func Parse(header []byte) *storagev1.Envelope {
	first := map[string]string{}
	for _, f := range Fields(header) {
		key := strings.ToLower(f[0])
		if _, seen := first[key]; !seen {
			first[key] = f[1]
		}
	}
	env := &storagev1.Envelope{
		DateRaw:    clean(first["date"]),
		Subject:    clean(decodeWords(first["subject"])),
		From:       addresses(first["from"]),
		Sender:     addresses(first["sender"]),
		ReplyTo:    addresses(first["reply-to"]),
		To:         addresses(first["to"]),
		Cc:         addresses(first["cc"]),
		Bcc:        addresses(first["bcc"]),
		InReplyTo:  clean(first["in-reply-to"]),
		MessageId:  clean(first["message-id"]),
		References: References(first["references"]),
	}
	if d, err := mail.ParseDate(first["date"]); err == nil {
		env.Date = timestamppb.New(d)
	}
	return env
}

func decodeWords(s string) string {
	decoded, err := decoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return decoded
}

// addresses parses an address list; when the whole list does not parse, each
// comma-separated piece is tried on its own and the readable ones are kept.
func addresses(value string) []*storagev1.Address {
	if strings.TrimSpace(value) == "" {
		return nil
	}
	parser := mail.AddressParser{WordDecoder: decoder}
	list, err := parser.ParseList(value)
	if err != nil {
		// Comments inside an address (RFC 5322 3.4.1 allows CFWS around
		// the local part and the domain) are beyond net/mail.
		value = withoutComments(value)
		list, err = parser.ParseList(value)
	}
	if err != nil {
		list = nil
		for _, piece := range strings.Split(value, ",") {
			if a, err := parser.Parse(piece); err == nil {
				list = append(list, a)
			}
		}
	}
	var out []*storagev1.Address
	for _, a := range list {
		if len(out) == maxAddresses {
			break
		}
		local, host, _ := strings.Cut(a.Address, "@")
		if i := strings.LastIndex(a.Address, "@"); i >= 0 {
			local, host = a.Address[:i], a.Address[i+1:]
		}
		out = append(out, &storagev1.Address{Name: clean(a.Name), Mailbox: clean(local), Host: clean(host)})
	}
	return out
}

// withoutComments removes RFC 5322 comments (parenthesized, nestable, with
// quoted-pairs) outside quoted strings, and the white space inside angle
// brackets, so that "<user (c)@ (c) example.org>" reads as
// "<user@example.org>".
func withoutComments(s string) string {
	var out strings.Builder
	depth, quoted, angle := 0, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (quoted || depth > 0) && i+1 < len(s):
			if depth == 0 {
				out.WriteByte(c)
				out.WriteByte(s[i+1])
			}
			i++
		case depth > 0:
			if c == '(' {
				depth++
			} else if c == ')' {
				depth--
			}
		case quoted:
			out.WriteByte(c)
			if c == '"' {
				quoted = false
			}
		case c == '"':
			quoted = true
			out.WriteByte(c)
		case c == '(':
			depth = 1
			if !angle {
				out.WriteByte(' ')
			}
		case c == '<' || c == '>':
			angle = c == '<'
			out.WriteByte(c)
		case angle && (c == ' ' || c == '\t' || c == '\r' || c == '\n'):
		default:
			out.WriteByte(c)
		}
	}
	return out.String()
}

// clean makes s valid UTF-8 (protobuf strings must be) and bounds its length.
func clean(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) > maxFieldLen {
		s = s[:maxFieldLen]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// MessageIDs returns the msg-ids ("<...>", brackets included, white space
// inside removed) of a References or In-Reply-To value, in order; text
// outside angle brackets (phrases, comments) is skipped.
func MessageIDs(value string) []string {
	var ids []string
	for {
		start := strings.IndexByte(value, '<')
		if start < 0 {
			return ids
		}
		end := strings.IndexByte(value[start:], '>')
		if end < 0 {
			return ids
		}
		id := strings.Join(strings.Fields(value[start:start+end+1]), "")
		if len(id) > 2 {
			ids = append(ids, id)
		}
		value = value[start+end+1:]
	}
}

// References keeps the message IDs of a References header, space-separated,
// as many of the last ones (the nearest parents) as fit in maxFieldLen.
func References(value string) string {
	ids := MessageIDs(value)
	n, size := len(ids), 0
	for n > 0 && size+len(ids[n-1])+1 <= maxFieldLen+1 {
		size += len(ids[n-1]) + 1
		n--
	}
	return clean(strings.Join(ids[n:], " "))
}
