package mailcorpus

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"
)

// The header fields of a message, written as common mailers and MTAs
// write them.

// recipientCount draws how many addresses To and Cc hold.
func recipientCount(r *rng) int {
	switch u := r.intn(1000); {
	case u < 550:
		return 1
	case u < 700:
		return 2
	case u < 800:
		return 3
	case u < 920:
		return r.between(4, 10)
	case u < 980:
		return r.between(11, 30)
	}
	return r.between(31, 50)
}

// recipients writes To and, when the addresses are split, Cc.
func (c *msgCtx) recipients(n int) {
	r := &c.r
	h := &c.h
	nTo := n
	if n > 1 && r.permille(400) {
		nTo = r.between(1, n-1)
	}
	h.field("To")
	group := nTo >= 2 && r.permille(20)
	if group {
		h.tokString("", pick(r, []string{"project-team:", "Board Members:", "undisclosed-list:"}))
	}
	for k := range nTo {
		c.tok, _, _ = c.appendAddress(c.tok[:0], false)
		sep := ","
		if k == 0 {
			sep = ""
		}
		h.tok(sep, c.tok)
	}
	if group {
		h.b = append(h.b, ';')
	}
	h.end()
	if n == nTo {
		return
	}
	h.field("Cc")
	for k := range n - nTo {
		c.tok, _, _ = c.appendAddress(c.tok[:0], false)
		sep := ","
		if k == 0 {
			sep = ""
		}
		h.tok(sep, c.tok)
	}
	h.end()
}

// subject writes the Subject field: the thread's subject behind the prefix
// a reply, forward or list gives it, encoded (RFC 2047) if not ASCII.
func (c *msgCtx) subject(m *meta, list string, forward bool) {
	r := &c.r
	h := &c.h
	v := c.tok[:0]
	if forward {
		v = append(v, pick(r, []string{"Fwd: ", "Fw: ", "FW: ", "WG: "})...)
	} else if len(m.refs) > 0 {
		v = append(v, pick(r, []string{"Re: ", "Re: ", "Re: ", "Re: ", "RE: ", "AW: ", "Re: Re: ", "Antw: "})...)
	}
	if list != "" && m.subject[0] != '[' {
		v = append(v, '[')
		v = append(v, list...)
		v = append(v, "] "...)
	}
	base := m.subject

	switch c.fault {
	case KindBrokenEmptyHeader:
		if r.permille(500) {
			h.b = append(h.b, "Subject:\r\n"...)
			c.fault = KindPlain
			c.tok = v
			return
		}
	case KindBroken8BitHeader:
		h.b = append(h.b, "Subject: "...)
		h.b = append(h.b, v...)
		h.b = append(h.b, base...)
		if isASCII(base) {
			h.b = append(h.b, " – Grüße aus Köln"...)
		}
		h.b = append(h.b, "\r\n"...)
		c.fault = KindPlain
		c.tok = v
		return
	case KindBrokenLongHeader:
		if r.permille(500) {
			// One subject line of 1000–3000 octets, never folded.
			h.b = append(h.b, "Subject: "...)
			h.b = append(h.b, v...)
			h.b = append(h.b, base...)
			for n, start := r.between(1000, 3000), len(h.b); len(h.b)-start < n; {
				h.b = append(h.b, ' ')
				h.b = append(h.b, pick(r, english)...)
			}
			h.b = append(h.b, "\r\n"...)
			c.fault = KindPlain
			c.tok = v
			return
		}
	}

	if !isASCII(base) {
		latin1 := isLatin1(base) && r.permille(300)
		q := latin1 || r.permille(450)
		if r.permille(200) {
			// Some mailers encode the prefix too.
			v = appendEncodedWords(v[:0], string(v)+base, latin1, q)
		} else {
			v = appendEncodedWords(v, base, latin1, q)
		}
	} else {
		v = append(v, base...)
	}
	h.field("Subject")
	for start := 0; start < len(v); {
		end := start
		for end < len(v) && v[end] != ' ' {
			end++
		}
		if end > start {
			h.tok("", v[start:end])
		}
		start = end + 1
	}
	h.end()
	c.tok = v
}

// appendDate appends t in one of the forms RFC 5322 3.3 allows.
func (c *msgCtx) appendDate(dst []byte, t time.Time) []byte {
	switch u := c.r.intn(100); {
	case u < 65:
		return t.AppendFormat(dst, "Mon, 2 Jan 2006 15:04:05 -0700")
	case u < 75:
		return t.AppendFormat(dst, "Mon, 02 Jan 2006 15:04:05 -0700")
	case u < 87:
		return t.AppendFormat(dst, "Mon, 2 Jan 2006 15:04:05 -0700 (MST)")
	case u < 92:
		return t.AppendFormat(dst, "2 Jan 2006 15:04:05 -0700")
	case u < 95:
		return t.AppendFormat(dst, "Mon, 2 Jan 2006 15:04 -0700")
	case u < 98:
		return t.UTC().AppendFormat(dst, "Mon, 2 Jan 2006 15:04:05 GMT") // obs-zone, RFC 5322 4.3
	}
	return t.AppendFormat(dst, "Mon, 2 Jan 06 15:04:05 -0700") // obs-year, RFC 5322 4.3
}

// appendBadDate appends a date in a form no RFC 5322 parser accepts.
func (c *msgCtx) appendBadDate(dst []byte, t time.Time) []byte {
	switch c.r.intn(5) {
	case 0:
		return t.AppendFormat(dst, time.RFC3339)
	case 1:
		return t.AppendFormat(dst, time.ANSIC)
	case 2:
		return t.AppendFormat(dst, "02/01/2006 15:04")
	case 3:
		return t.AppendFormat(dst, "Monday, January 2, 2006 3:04 PM")
	}
	dst = append(dst, "Thu, 31 Feb "...)
	dst = strconv.AppendInt(dst, int64(t.Year()), 10)
	return append(dst, " 25:61:00 +0000"...)
}

// received writes a Received field (RFC 5321 4.4) as Postfix and the big
// providers write them.
func (c *msgCtx) received(t time.Time, sender []byte, final bool) {
	r := &c.r
	h := &c.h
	dom := domainOf(sender)
	h.b = append(h.b, "Received: from "...)
	if final {
		host := c.tok[:0]
		host = append(host, "mail-"...)
		host = appendHex(host, r, 4)
		host = append(host, '.')
		host = append(host, dom...)
		h.b = append(h.b, host...)
		h.b = append(h.b, " ("...)
		h.b = append(h.b, host...)
		c.tok = host
		if r.permille(200) {
			h.b = append(h.b, " [2001:db8::"...)
			h.b = appendHex(h.b, r, 3)
		} else {
			h.b = append(h.b, " ["...)
			h.b = append(h.b, pick(r, []string{"192.0.2.", "198.51.100.", "203.0.113."})...)
			h.b = strconv.AppendInt(h.b, int64(r.between(1, 254)), 10)
		}
		h.b = append(h.b, "])\r\n\tby mx"...)
		h.b = strconv.AppendInt(h.b, int64(r.between(1, 3)), 10)
		h.b = append(h.b, ".mailfleet.test (Postfix) with ESMTPS id "...)
		h.b = appendHexUpper(h.b, r, 11)
		h.b = append(h.b, "\r\n\tfor <"...)
		h.b = append(h.b, pick(r, firstNames).ascii...)
		h.b = append(h.b, "@mailfleet.test>; "...)
		h.b = t.UTC().AppendFormat(h.b, "Mon, 2 Jan 2006 15:04:05 -0700 (MST)")
		h.b = append(h.b, "\r\n"...)
		return
	}
	switch r.intn(3) {
	case 0:
		h.b = append(h.b, "smtp."...)
		h.b = append(h.b, dom...)
		h.b = append(h.b, " (smtp."...)
		h.b = append(h.b, dom...)
		h.b = append(h.b, " [10.0."...)
		h.b = strconv.AppendInt(h.b, int64(r.between(0, 255)), 10)
		h.b = append(h.b, '.')
		h.b = strconv.AppendInt(h.b, int64(r.between(1, 254)), 10)
		h.b = append(h.b, "])\r\n\tby relay."...)
		h.b = append(h.b, dom...)
		h.b = append(h.b, " with ESMTP id "...)
		h.b = appendHex(h.b, r, 12)
	case 1:
		h.b = append(h.b, "[127.0.0.1] (localhost [127.0.0.1])\r\n\tby smtp."...)
		h.b = append(h.b, dom...)
		h.b = append(h.b, " (Postfix) with ESMTPSA id "...)
		h.b = appendHexUpper(h.b, r, 10)
	default:
		h.b = append(h.b, "DB6PR07MB"...)
		h.b = strconv.AppendInt(h.b, int64(r.between(1000, 9999)), 10)
		h.b = append(h.b, ".eurprd07.prod.outlook.example\r\n\t([fe80::"...)
		h.b = appendHex(h.b, r, 4)
		h.b = append(h.b, "]) by DB6PR07MB"...)
		h.b = strconv.AppendInt(h.b, int64(r.between(1000, 9999)), 10)
		h.b = append(h.b, ".eurprd07.prod.outlook.example\r\n\t([fe80::"...)
		h.b = appendHex(h.b, r, 4)
		h.b = append(h.b, "%5]) with mapi id 15.20.7228.029"...)
	}
	h.b = append(h.b, ";\r\n\t"...)
	h.b = t.AppendFormat(h.b, "Mon, 2 Jan 2006 15:04:05 -0700")
	h.b = append(h.b, "\r\n"...)
}

func (c *msgCtx) authResults(sender []byte) {
	r := &c.r
	h := &c.h
	dom := domainOf(sender)
	h.b = append(h.b, "Authentication-Results: mx1.mailfleet.test;\r\n\tdkim=pass header.d="...)
	h.b = append(h.b, dom...)
	h.b = append(h.b, " header.s=selector1 header.b="...)
	h.b = appendRandB64(h.b, r, 8)
	h.b = append(h.b, ";\r\n\tspf=pass (mx1.mailfleet.test: domain of "...)
	h.b = append(h.b, sender...)
	h.b = append(h.b, " designates 198.51.100."...)
	h.b = strconv.AppendInt(h.b, int64(r.between(1, 254)), 10)
	h.b = append(h.b, " as permitted sender) smtp.mailfrom="...)
	h.b = append(h.b, sender...)
	h.b = append(h.b, ";\r\n\tdmarc=pass (p=NONE sp=NONE dis=NONE) header.from="...)
	h.b = append(h.b, dom...)
	h.b = append(h.b, "\r\n"...)
}

// dkim writes a DKIM-Signature (RFC 6376) whose b= is folded as signers
// fold it; it verifies nothing.
func (c *msgCtx) dkim(sender []byte, t time.Time) {
	r := &c.r
	h := &c.h
	h.b = append(h.b, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d="...)
	h.b = append(h.b, domainOf(sender)...)
	h.b = append(h.b, ";\r\n\ts=selector"...)
	h.b = strconv.AppendInt(h.b, int64(r.between(1, 2)), 10)
	h.b = append(h.b, "; t="...)
	h.b = strconv.AppendInt(h.b, t.Unix(), 10)
	h.b = append(h.b, ";\r\n\th=from:to:cc:subject:date:message-id:mime-version:content-type;\r\n\tbh="...)
	h.b = appendRandB64(h.b, r, 43)
	h.b = append(h.b, "=;\r\n\tb="...)
	for k := range 5 {
		if k > 0 {
			h.b = append(h.b, "\r\n\t "...)
		}
		h.b = appendRandB64(h.b, r, 68)
	}
	h.b = append(h.b, "\r\n\t "...)
	h.b = appendRandB64(h.b, r, 4)
	h.b = append(h.b, "==\r\n"...)
}

func (c *msgCtx) listHeaders(list string) {
	h := &c.h
	h.b = append(h.b, "List-Id: "...)
	h.b = append(h.b, list...)
	h.b = append(h.b, " mailing list <"...)
	h.b = append(h.b, list...)
	h.b = append(h.b, ".lists.example.org>\r\nList-Unsubscribe: <mailto:"...)
	h.b = append(h.b, list...)
	h.b = append(h.b, "-unsubscribe@lists.example.org>,\r\n <https://lists.example.org/mailman/options/"...)
	h.b = append(h.b, list...)
	h.b = append(h.b, ">\r\nList-Post: <mailto:"...)
	h.b = append(h.b, list...)
	h.b = append(h.b, "@lists.example.org>\r\nPrecedence: list\r\n"...)
}

// longHeader writes one unfolded line of 1000–4000 octets.
func (c *msgCtx) longHeader() {
	r := &c.r
	h := &c.h
	h.b = append(h.b, "X-Campaign-Data: "...)
	h.b = appendRandB64(h.b, r, r.between(1000, 4000))
	h.b = append(h.b, "\r\n"...)
}

// appendAddress appends one address (RFC 5322 3.4) in one of the forms
// mailers write, and returns where the addr-spec is within dst.
func (c *msgCtx) appendAddress(dst []byte, sender bool) (out []byte, at, end int) {
	r := &c.r
	first, last := pick(r, firstNames), pick(r, lastNames)
	dom := pick(r, domains)
	var lp [64]byte
	local := lp[:0]
	role := ""
	switch u := r.intn(100); {
	case sender && u < 15:
		role = pick(r, roleLocals)
		local = append(local, role...)
	case u < 50:
		local = append(local, first.ascii...)
		local = append(local, '.')
		local = append(local, last.ascii...)
	case u < 65:
		local = append(local, first.ascii[0])
		local = append(local, last.ascii...)
	case u < 75:
		local = append(local, first.ascii...)
	case u < 85:
		local = append(local, first.ascii...)
		local = append(local, '_')
		local = append(local, last.ascii...)
		local = strconv.AppendInt(local, int64(r.between(1, 99)), 10)
	case u < 90:
		local = append(local, first.ascii...)
		local = append(local, '+')
		local = append(local, pick(r, english)...)
	default:
		local = append(local, first.ascii...)
		local = append(local, '.')
		local = append(local, last.ascii...)
		local[0] = upper(local[0])
	}

	// The display name, in c.name while it is put together.
	name := c.name[:0]
	if role != "" {
		name = append(name, pick(r, companies)...)
	} else {
		name = append(name, first.name...)
		name = append(name, ' ')
		name = append(name, last.name...)
	}
	ascii := isASCII(string(name))

	mailbox := func(dst []byte) ([]byte, int, int) {
		at := len(dst)
		dst = append(dst, local...)
		dst = append(dst, '@')
		dst = append(dst, dom...)
		return dst, at, len(dst)
	}
	angle := func(dst []byte) ([]byte, int, int) {
		dst = append(dst, " <"...)
		dst, at, end := mailbox(dst)
		return append(dst, '>'), at, end
	}

	switch u := r.intn(100); {
	case u < 22:
		out, at, end = mailbox(dst)
	case u < 26:
		dst = append(dst, '<')
		out, at, end = mailbox(dst)
		out = append(out, '>')
	case u < 28 && ascii:
		out, at, end = mailbox(dst)
		out = append(out, " ("...)
		out = append(out, name...)
		out = append(out, ')')
	case u < 62 && ascii:
		dst = append(dst, name...)
		out, at, end = angle(dst)
	case u < 77 && ascii && role == "":
		dst = append(dst, '"')
		dst = append(dst, last.name...)
		dst = append(dst, ", "...)
		dst = append(dst, first.name...)
		dst = append(dst, '"')
		out, at, end = angle(dst)
	case u < 80 && ascii && role == "":
		dst = append(dst, '"')
		dst = append(dst, first.name...)
		dst = append(dst, ` \"`...)
		dst = append(dst, first.ascii[:min(3, len(first.ascii))]...)
		dst = append(dst, `\" `...)
		dst = append(dst, last.name...)
		dst = append(dst, '"')
		out, at, end = angle(dst)
	default:
		// RFC 2047 5(3): encoded-words as the phrase.
		if role == "" && r.permille(400) {
			name = append(name[:0], last.name...)
			name = append(name, ", "...)
			name = append(name, first.name...)
		}
		latin1 := isLatin1(string(name)) && r.permille(400)
		dst = appendEncodedWords(dst, string(name), latin1, latin1 || r.permille(400))
		out, at, end = angle(dst)
	}
	c.name = name
	return out, at, end
}

// hdr collects header fields, folding structured ones (RFC 5322 2.2.3)
// between tokens so that lines stay within 78 octets where they can.
type hdr struct {
	b     []byte
	col   int
	empty bool
}

func (h *hdr) field(name string) {
	h.b = append(h.b, name...)
	h.b = append(h.b, ':')
	h.col = len(name) + 1
	h.empty = true
}

// tok appends sep and then t, starting a continuation line before t if it
// would take the line past 78 octets.
func (h *hdr) tok(sep string, t []byte) {
	h.b = append(h.b, sep...)
	h.col += len(sep)
	if !h.empty && h.col+1+len(t) > 78 {
		h.b = append(h.b, "\r\n "...)
		h.col = 1
	} else {
		h.b = append(h.b, ' ')
		h.col++
	}
	h.b = append(h.b, t...)
	h.col += len(t)
	h.empty = false
}

func (h *hdr) tokString(sep string, t string) {
	h.b = append(h.b, sep...)
	h.col += len(sep)
	if !h.empty && h.col+1+len(t) > 78 {
		h.b = append(h.b, "\r\n "...)
		h.col = 1
	} else {
		h.b = append(h.b, ' ')
		h.col++
	}
	h.b = append(h.b, t...)
	h.col += len(t)
	h.empty = false
}

func (h *hdr) end() { h.b = append(h.b, "\r\n"...) }

// appendEncodedWords appends s as RFC 2047 encoded-words separated by
// spaces: each at most 75 octets (RFC 2047 2) and holding whole
// characters (RFC 2047 5), in ISO-8859-1 (s must fit it) or UTF-8, Q or B.
func appendEncodedWords(dst []byte, s string, latin1, q bool) []byte {
	q = q || latin1
	prefix := "=?UTF-8?B?"
	switch {
	case latin1:
		prefix = "=?ISO-8859-1?Q?"
	case q:
		prefix = "=?UTF-8?Q?"
	}
	room := 75 - len(prefix) - 2
	var raw [64]byte
	word := raw[:0] // the characters of the current word, in its charset
	used := 0       // octets they take encoded
	first := true
	flush := func() {
		if len(word) == 0 {
			return
		}
		if !first {
			dst = append(dst, ' ')
		}
		first = false
		dst = append(dst, prefix...)
		if q {
			for _, b := range word {
				switch {
				case b == ' ':
					dst = append(dst, '_')
				case qSafe(b):
					dst = append(dst, b)
				default:
					dst = append(dst, '=', hexUpper[b>>4], hexUpper[b&15])
				}
			}
		} else {
			dst = base64.StdEncoding.AppendEncode(dst, word)
		}
		dst = append(dst, "?="...)
		word, used = word[:0], 0
	}
	for _, ch := range s {
		var enc [utf8.UTFMax]byte
		b := enc[:0]
		if latin1 {
			b = append(b, byte(ch))
		} else {
			b = utf8.AppendRune(b, ch)
		}
		cost := 0
		if q {
			for _, x := range b {
				if x == ' ' || qSafe(x) {
					cost++
				} else {
					cost += 3
				}
			}
		} else {
			cost = (len(word)+len(b)+2)/3*4 - used
		}
		if used+cost > room {
			flush()
			if !q {
				cost = (len(b) + 2) / 3 * 4
			}
		}
		word = append(word, b...)
		used += cost
	}
	flush()
	return dst
}

// qSafe reports whether b may stand for itself in a Q-encoded word in a
// phrase (RFC 2047 5(3)).
func qSafe(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
		b == '!' || b == '*' || b == '+' || b == '-' || b == '/'
}

const hexLower = "0123456789abcdef"
const hexUpper = "0123456789ABCDEF"

func appendHex(dst []byte, r *rng, n int) []byte {
	for n > 0 {
		v := r.next()
		for k := 0; k < 16 && n > 0; k, n = k+1, n-1 {
			dst = append(dst, hexLower[v&15])
			v >>= 4
		}
	}
	return dst
}

func appendHexUpper(dst []byte, r *rng, n int) []byte {
	for n > 0 {
		v := r.next()
		for k := 0; k < 16 && n > 0; k, n = k+1, n-1 {
			dst = append(dst, hexUpper[v&15])
			v >>= 4
		}
	}
	return dst
}

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// appendRandB64 appends n random characters of the base64 alphabet.
func appendRandB64(dst []byte, r *rng, n int) []byte {
	for n > 0 {
		v := r.next()
		for k := 0; k < 10 && n > 0; k, n = k+1, n-1 {
			dst = append(dst, b64Alphabet[v&63])
			v >>= 6
		}
	}
	return dst
}

func appendUUID(dst []byte, r *rng) []byte {
	for k, n := range []int{8, 4, 4, 4, 12} {
		if k > 0 {
			dst = append(dst, '-')
		}
		dst = appendHexUpper(dst, r, n)
	}
	return dst
}

// appendWords appends n words separated by spaces.
func appendWords(dst []byte, r *rng, words []string, n int) []byte {
	for k := range n {
		if k > 0 {
			dst = append(dst, ' ')
		}
		dst = append(dst, pick(r, words)...)
	}
	return dst
}

func domainOf(addr []byte) []byte {
	for k := len(addr) - 1; k >= 0; k-- {
		if addr[k] == '@' {
			return addr[k+1:]
		}
	}
	return addr
}

func upper(b byte) byte {
	if 'a' <= b && b <= 'z' {
		return b - 'a' + 'A'
	}
	return b
}

func isASCII(s string) bool {
	for k := 0; k < len(s); k++ {
		if s[k] >= 0x80 {
			return false
		}
	}
	return true
}

func isLatin1(s string) bool {
	for _, ch := range s {
		if ch > 0xff {
			return false
		}
	}
	return true
}
