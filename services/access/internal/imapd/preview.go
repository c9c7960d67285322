package imapd

import (
	"bytes"
	"html"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// RFC 8970 PREVIEW: "a plain text representation of the message's main
// body" of at most 256 characters (section 3: the server SHOULD "remove
// any whitespace or formatting", "MUST NOT" return more than 256
// characters). It comes from the first text part of the MIME tree the
// storage tier keeps (text/plain, else text/html with its markup taken
// out), of which only the first bytes are read: enough for 256 characters
// in any transfer encoding, never the whole part. The preview is computed
// at each FETCH; PREVIEW (LAZY) gets it the same way (section 3.1 lets the
// server answer it at once when it can).

const (
	previewChars = 256
	// What is read of a text/plain part: 256 characters of UTF-8 are at
	// most 1 KiB, quoted-printable triples that, base64 adds a third, and
	// whitespace collapses.
	previewPlainBytes = 8 << 10
	// A text/html part may open with a long head and style sheet.
	previewHTMLBytes = 32 << 10
)

// preview answers PREVIEW for one message ("" for one without text).
func (s *session) preview(uid uint32, m *storagev1.Message) (string, error) {
	part := firstTextPart(m.Structure, "plain")
	isHTML := false
	if part == nil {
		part, isHTML = firstTextPart(m.Structure, "html"), true
	}
	if part == nil {
		return "", nil
	}
	limit := uint64(previewPlainBytes)
	if isHTML {
		limit = previewHTMLBytes
	}
	n := min(part.Size, limit)
	if n == 0 {
		return "", nil
	}
	raw, err := s.readBody(uid, part.BodyOffset, n)
	if err != nil {
		return "", err
	}
	text := decodeTransfer(part.Encoding, raw)
	text = toUTF8(text, paramOf(part.Params, "charset"))
	str := string(text)
	if isHTML {
		str = htmlText(str)
	}
	return collapse(str, previewChars), nil
}

// firstTextPart finds the first text/<subtype> part, depth first, that is
// not an attachment; an encapsulated message is not looked into.
func firstTextPart(p *storagev1.BodyPart, subtype string) *storagev1.BodyPart {
	if p == nil {
		return nil
	}
	if isMultipart(p) {
		for _, c := range p.Parts {
			if found := firstTextPart(c, subtype); found != nil {
				return found
			}
		}
		return nil
	}
	if strings.EqualFold(p.Type, "text") && strings.EqualFold(p.Subtype, subtype) && !strings.EqualFold(p.Disposition, "attachment") {
		return p
	}
	return nil
}

func paramOf(params []*storagev1.BodyParam, name string) string {
	for _, p := range params {
		if strings.EqualFold(p.Name, name) {
			return p.Value
		}
	}
	return ""
}

// toUTF8 converts text from its charset; unknown charsets and invalid
// bytes keep what is valid UTF-8.
func toUTF8(text []byte, cs string) []byte {
	if cs != "" && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
		if r, err := charset.Reader(cs, bytes.NewReader(text)); err == nil {
			if out, err := io.ReadAll(r); err == nil || len(out) > 0 {
				text = out
			}
		}
	}
	return bytes.ToValidUTF8(text, nil)
}

// htmlText takes the markup out of (the beginning of) an HTML part: tags,
// comments, and the contents of head, style and script, then entities.
func htmlText(s string) string {
	var b strings.Builder
	lower := strings.ToLower(s)
	for i := 0; i < len(s); {
		if s[i] != '<' {
			j := strings.IndexByte(s[i:], '<')
			if j < 0 {
				j = len(s) - i
			}
			b.WriteString(s[i : i+j])
			i += j
			continue
		}
		if strings.HasPrefix(s[i:], "<!--") {
			end := strings.Index(s[i:], "-->")
			if end < 0 {
				break
			}
			i += end + 3
			continue
		}
		skipped := false
		for _, el := range []string{"head", "style", "script", "title"} {
			if strings.HasPrefix(lower[i:], "<"+el) {
				end := strings.Index(lower[i:], "</"+el)
				if end < 0 {
					i = len(s)
				} else {
					i += end
					if gt := strings.IndexByte(s[i:], '>'); gt >= 0 {
						i += gt + 1
					} else {
						i = len(s)
					}
				}
				skipped = true
				break
			}
		}
		if skipped {
			continue
		}
		gt := strings.IndexByte(s[i:], '>')
		if gt < 0 {
			break // a tag cut off by the read limit
		}
		b.WriteByte(' ') // a tag separates words (<br>, </p>)
		i += gt + 1
	}
	return html.UnescapeString(b.String())
}

// collapse turns every run of whitespace (and control characters) into
// one space, trims, and keeps at most max characters.
func collapse(s string, max int) string {
	var b strings.Builder
	n, space := 0, false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) {
			space = b.Len() > 0
			continue
		}
		if n == max {
			break
		}
		if space {
			if n+1 == max {
				break
			}
			b.WriteByte(' ')
			n++
			space = false
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
