package mailmove

import (
	"encoding/base64"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Modified UTF-7 (RFC 3501 5.1.3), in which Dovecot writes folder names
// on disk unless told to use UTF-8.
var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// decodeMUTF7 decodes s; a name that is not valid modified UTF-7 is
// returned as it is (it was written in UTF-8).
func decodeMUTF7(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return s
		}
		if c != '&' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return s
		}
		enc := s[i+1 : i+1+end]
		i += end + 1
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := mutf7.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 {
			return s
		}
		u := make([]uint16, len(raw)/2)
		for j := range u {
			u[j] = uint16(raw[2*j])<<8 | uint16(raw[2*j+1])
		}
		b.WriteString(string(utf16.Decode(u)))
	}
	return b.String()
}

// encodeMUTF7 encodes a UTF-8 name.
func encodeMUTF7(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r >= 0x20 && r < 0x7f {
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			i += size
			continue
		}
		j := i
		var u []uint16
		for j < len(s) {
			r, size := utf8.DecodeRuneInString(s[j:])
			if r >= 0x20 && r < 0x7f {
				break
			}
			u = append(u, utf16.Encode([]rune{r})...)
			j += size
		}
		raw := make([]byte, 2*len(u))
		for k, v := range u {
			raw[2*k], raw[2*k+1] = byte(v>>8), byte(v)
		}
		b.WriteString("&" + mutf7.EncodeToString(raw) + "-")
		i = j
	}
	return b.String()
}
