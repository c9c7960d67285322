package imapconn

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Modified UTF-7 for mailbox names, RFC 3501 section 5.1.3.
//
// Printable US-ASCII (0x20-0x7e) other than "&" represents itself; "&" is
// written "&-"; every other character is written as modified BASE64 (RFC 2152
// BASE64 with "," in place of "/" and no "=" padding) of its UTF-16
// big-endian form, between "&" and "-".

const mutf7Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

// mutf7Value maps a modified BASE64 character to its 6-bit value, or -1.
var mutf7Value = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(mutf7Alphabet); i++ {
		t[mutf7Alphabet[i]] = int8(i)
	}
	return t
}()

// ErrMailboxName is wrapped by every error DecodeMailboxName returns.
var ErrMailboxName = errors.New("malformed modified UTF-7 mailbox name")

func mutf7Plain(c rune) bool { return c >= 0x20 && c <= 0x7e }

// EncodeMailboxName encodes a UTF-8 mailbox name as modified UTF-7
// (RFC 3501 section 5.1.3). Invalid UTF-8 bytes are encoded as U+FFFD.
func EncodeMailboxName(name string) string {
	ascii := true
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '&' || !mutf7Plain(rune(c)) {
			ascii = false
			break
		}
	}
	if ascii {
		return name
	}

	var b strings.Builder
	b.Grow(len(name) + 8)
	var pending []uint16 // UTF-16 units of the current non-ASCII run
	flush := func() {
		if len(pending) == 0 {
			return
		}
		b.WriteByte('&')
		var acc uint32
		var bits uint
		for _, u := range pending {
			for _, by := range [2]byte{byte(u >> 8), byte(u)} {
				acc = acc<<8 | uint32(by)
				bits += 8
				for bits >= 6 {
					bits -= 6
					b.WriteByte(mutf7Alphabet[(acc>>bits)&0x3f])
				}
			}
		}
		if bits > 0 {
			b.WriteByte(mutf7Alphabet[(acc<<(6-bits))&0x3f])
		}
		b.WriteByte('-')
		pending = pending[:0]
	}
	for _, r := range name { // invalid UTF-8 yields utf8.RuneError (U+FFFD)
		if mutf7Plain(r) {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		pending = utf16.AppendRune(pending, r)
	}
	flush()
	return b.String()
}

// DecodeMailboxName decodes a modified UTF-7 mailbox name (RFC 3501 section
// 5.1.3) to UTF-8. It rejects, with an error wrapping ErrMailboxName:
// 8-bit bytes and control characters outside a BASE64 run, "&" not closed by
// "-", characters outside the modified BASE64 alphabet, BASE64 that does not
// end on a whole UTF-16 unit (or has non-zero padding bits), unpaired
// surrogates, and BASE64 runs that encode characters which must be written
// plainly (printable US-ASCII, including "&"). The caller answers BAD.
func DecodeMailboxName(s string) (string, error) {
	if strings.IndexByte(s, '&') < 0 {
		for i := 0; i < len(s); i++ {
			if !mutf7Plain(rune(s[i])) {
				return "", fmt.Errorf("%w: byte 0x%02x at offset %d", ErrMailboxName, s[i], i)
			}
		}
		return s, nil
	}

	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '&' {
			if !mutf7Plain(rune(c)) {
				return "", fmt.Errorf("%w: byte 0x%02x at offset %d", ErrMailboxName, c, i)
			}
			b.WriteByte(c)
			i++
			continue
		}
		start := i
		i++
		end := strings.IndexByte(s[i:], '-')
		if end < 0 {
			return "", fmt.Errorf("%w: \"&\" at offset %d not closed by \"-\"", ErrMailboxName, start)
		}
		run := s[i : i+end]
		i += end + 1
		if run == "" {
			b.WriteByte('&')
			continue
		}
		units, err := decodeMUTF7Run(run)
		if err != nil {
			return "", fmt.Errorf("%w: at offset %d: %v", ErrMailboxName, start, err)
		}
		for j := 0; j < len(units); j++ {
			u := units[j]
			var r rune
			switch {
			case utf16.IsSurrogate(rune(u)):
				if u >= 0xdc00 || j+1 >= len(units) {
					return "", fmt.Errorf("%w: at offset %d: unpaired UTF-16 surrogate", ErrMailboxName, start)
				}
				r = utf16.DecodeRune(rune(u), rune(units[j+1]))
				if r == utf8.RuneError {
					return "", fmt.Errorf("%w: at offset %d: unpaired UTF-16 surrogate", ErrMailboxName, start)
				}
				j++
			default:
				r = rune(u)
			}
			if mutf7Plain(r) {
				return "", fmt.Errorf("%w: at offset %d: printable ASCII %q encoded in BASE64", ErrMailboxName, start, r)
			}
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}

// decodeMUTF7Run decodes the modified BASE64 between "&" and "-" to UTF-16
// units.
func decodeMUTF7Run(run string) ([]uint16, error) {
	units := make([]uint16, 0, len(run)*6/16)
	var acc uint32
	var bits uint
	var unit uint16
	half := false
	for i := 0; i < len(run); i++ {
		v := mutf7Value[run[i]]
		if v < 0 {
			return nil, fmt.Errorf("character %q is not modified BASE64", run[i])
		}
		acc = acc<<6 | uint32(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			by := uint16(acc>>bits) & 0xff
			if half {
				units = append(units, unit|by)
				half = false
			} else {
				unit = by << 8
				half = true
			}
		}
	}
	if half {
		return nil, errors.New("BASE64 does not end on a whole UTF-16 unit")
	}
	if bits >= 6 || acc&(1<<bits-1) != 0 {
		return nil, errors.New("BASE64 has trailing bits")
	}
	return units, nil
}
