package mimetree

import (
	"io"
	"mime"
	"slices"
	"strings"

	"github.com/emersion/go-message/charset"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// parseValue parses a Content-Type or Content-Disposition value into its
// lower-case value and its parameters in header order. Parameters are
// decoded as go-message decodes them for go-imap: RFC 2231 by
// mime.ParseMediaType (continuations joined, UTF-8 and US-ASCII values),
// then RFC 2047 encoded-words, which mailers put in quoted names. ok is
// false when the value itself is missing or malformed.
//
// Unlike mime.ParseMediaType, which rejects the whole field, a malformed
// parameter is left out on its own and a repeated one keeps its first value:
// one stray semicolon must not lose a multipart's boundary.
func parseValue(v string) (value string, params []*storagev1.BodyParam, ok bool) {
	base, rest, _ := strings.Cut(v, ";")
	var kept, order []string
	seen := map[string]bool{}
	for _, seg := range splitParams(rest) {
		if strings.TrimSpace(seg) == "" {
			continue
		}
		if _, _, err := mime.ParseMediaType("x;" + seg); err != nil {
			continue
		}
		key, _, _ := strings.Cut(seg, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		if seen[key] {
			continue
		}
		seen[key] = true
		kept = append(kept, seg)
		if name, _, _ := strings.Cut(key, "*"); !slices.Contains(order, name) {
			order = append(order, name)
		}
	}
	value, m, err := mime.ParseMediaType(base + ";" + strings.Join(kept, ";"))
	if err != nil {
		return "", nil, false
	}
	for _, name := range order {
		if val, ok := m[name]; ok {
			params = append(params, &storagev1.BodyParam{Name: name, Value: decodeWords(val)})
		}
	}
	return value, params, true
}

// splitParams splits the parameters of a field value at the semicolons
// outside quoted strings.
func splitParams(s string) []string {
	var segs []string
	start, quoted, escaped := 0, false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == ';' && !quoted:
			segs = append(segs, s[start:i])
			start = i + 1
		}
	}
	return append(segs, s[start:])
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

// decodeWords decodes RFC 2047 encoded-words, leaving s as it is when they
// do not decode (go-message's decodeHeader).
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	dec, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return dec
}

func charsetReader(name string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(name) {
	case "utf-8", "us-ascii":
		return input, nil
	}
	return charset.Reader(name, input)
}
