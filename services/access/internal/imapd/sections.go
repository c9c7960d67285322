package imapd

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-imap/v2"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Sections of a part (BODY[2.1], BODY[3.MIME], BINARY[2] …) are served from
// the MIME tree the storage tier keeps for every message (its offsets of
// each part's header and body): only the part's bytes are read from the body
// store, never the whole message. RFC 9051 6.4.5 defines the part numbers.

// findPart returns the part that path (1-based part numbers) names in the
// message whose top-level part is root, or nil if there is none.
func findPart(root *storagev1.BodyPart, path []int) *storagev1.BodyPart {
	container := root // the part whose children the next number counts
	var part *storagev1.BodyPart
	for i, k := range path {
		if i > 0 {
			switch {
			case isMultipart(part):
				container = part
			case isMessage(part) && len(part.Parts) == 1:
				// The parts of an encapsulated message are those of its body.
				container = part.Parts[0]
			default:
				return nil // a leaf has no parts below it
			}
		}
		if isMultipart(container) {
			if k < 1 || k > len(container.Parts) {
				return nil
			}
			part = container.Parts[k-1]
		} else {
			// A non-multipart message has one part: its body (RFC 9051 6.4.5).
			if k != 1 {
				return nil
			}
			part = container
		}
	}
	return part
}

func isMultipart(p *storagev1.BodyPart) bool { return strings.EqualFold(p.Type, "multipart") }

func isMessage(p *storagev1.BodyPart) bool {
	return strings.EqualFold(p.Type, "message") &&
		(strings.EqualFold(p.Subtype, "rfc822") || strings.EqualFold(p.Subtype, "global"))
}

// sectionRange returns the stored bytes [start, end) that a BODY section
// with a part number covers (before any <partial>): the part's body, its
// MIME header, or an encapsulated message's header or text.
func sectionRange(root *storagev1.BodyPart, bs *imap.FetchItemBodySection) (start, end uint64, ok bool) {
	p := findPart(root, bs.Part)
	if p == nil {
		return 0, 0, false
	}
	switch bs.Specifier {
	case imap.PartSpecifierNone:
		return p.BodyOffset, p.BodyOffset + p.Size, true
	case imap.PartSpecifierMIME:
		return p.HeaderOffset, p.BodyOffset, true
	}
	// HEADER and TEXT of a part exist only for an encapsulated message.
	if !isMessage(p) || len(p.Parts) != 1 {
		return 0, 0, false
	}
	inner := p.Parts[0]
	if bs.Specifier == imap.PartSpecifierHeader {
		return inner.HeaderOffset, inner.BodyOffset, true
	}
	return inner.BodyOffset, inner.BodyOffset + inner.Size, true
}

// partSection answers a BODY section with a part number from the bytes
// that sectionRange named.
func partSection(bs *imap.FetchItemBodySection, data []byte) []byte {
	if bs.Specifier == imap.PartSpecifierHeader && (len(bs.HeaderFields) > 0 || len(bs.HeaderFieldsNot) > 0) {
		// The header alone is a message with an empty body.
		return messageSection(data, &imap.FetchItemBodySection{
			Specifier: imap.PartSpecifierHeader, HeaderFields: bs.HeaderFields, HeaderFieldsNot: bs.HeaderFieldsNot, Partial: bs.Partial,
		})
	}
	off, n := partialRange(bs.Partial, uint64(len(data)))
	return data[off : off+n]
}

// binaryPart returns the stored bytes of a part's body, which BINARY[part]
// decodes, and its transfer encoding.
func binaryPart(root *storagev1.BodyPart, part []int) (start, end uint64, encoding string, ok bool) {
	p := findPart(root, part)
	if p == nil {
		return 0, 0, "", false
	}
	return p.BodyOffset, p.BodyOffset + p.Size, p.Encoding, true
}

// binaryWhole is BINARY[] of a whole message (RFC 3516 section 4.2): the
// header as stored, then the body with the message's own transfer
// encoding undone (a multipart body has none to undo; its parts are
// BINARY[1], BINARY[2], ...).
func binaryWhole(full []byte, m *storagev1.Message) []byte {
	hs := min(m.HeaderSize, uint64(len(full)))
	encoding := ""
	if m.Structure != nil {
		encoding = m.Structure.Encoding
	}
	body := decodeTransfer(encoding, full[hs:])
	out := make([]byte, 0, int(hs)+len(body))
	return append(append(out, full[:hs]...), body...)
}

// decodeTransfer undoes a content transfer encoding (RFC 3516 BINARY: the
// octets, no charset conversion). Damaged encodings decode as far as they can.
func decodeTransfer(encoding string, body []byte) []byte {
	switch strings.ToLower(encoding) {
	case "base64":
		return decodeBase64(body)
	case "quoted-printable":
		out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		return out
	}
	return body
}

// decodeBase64 decodes base64 leniently: characters outside the alphabet
// (line breaks, stray spaces) are skipped, and decoding stops at padding or
// at a trailing incomplete group.
func decodeBase64(in []byte) []byte {
	clean := make([]byte, 0, len(in))
	for _, c := range in {
		if c == '=' {
			break
		}
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' {
			clean = append(clean, c)
		}
	}
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1] // one character encodes no whole octet
	}
	out, _ := base64.RawStdEncoding.DecodeString(string(clean))
	return out
}
