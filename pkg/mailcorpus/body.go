package mailcorpus

import (
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"time"
)

// entity adds the Content-* fields of a body of the given structure to the
// header being collected, ends that header and writes the body.
func (c *msgCtx) entity(structure Kind, m *meta, bare bool) {
	r := &c.r
	reply := len(m.refs) > 0
	switch structure {
	case KindPlain:
		c.textPart(r.next(), textSize(r), textOpts{reply: reply, bare: bare})
	case KindHTML:
		c.textPart(r.next(), textSize(r)*2, textOpts{html: true, reply: reply})
	case KindAlternative:
		c.alternative(reply)
	case KindAttachments:
		c.mixed(reply)
	case KindForwarded:
		c.forward(m)
	}
}

// textSize draws the length of a message's text.
func textSize(r *rng) int {
	switch u := r.intn(1000); {
	case u < 600:
		return r.logUniform(200, 2000)
	case u < 900:
		return r.logUniform(2000, 8000)
	case u < 980:
		return r.logUniform(8000, 30000)
	}
	return r.logUniform(30000, 120000)
}

// attachCount draws how many attachments a multipart/mixed message has.
func attachCount(r *rng) int {
	switch u := r.intn(100); {
	case u < 60:
		return 1
	case u < 85:
		return 2
	case u < 95:
		return 3
	}
	return r.between(4, 6)
}

// attachSize draws the raw size of one attachment.
func attachSize(r *rng) int {
	switch u := r.intn(1000); {
	case u < 550:
		return r.logUniform(2000, 30000)
	case u < 850:
		return r.logUniform(30000, 100000)
	case u < 980:
		return r.logUniform(100000, 1500000)
	}
	return r.logUniform(1500000, 3600000)
}

func (c *msgCtx) alternative(reply bool) {
	r := &c.r
	seed, n := r.next(), textSize(r)
	// The same seed and charset: the HTML says what the text says.
	o := textOpts{reply: reply, charset: drawCharset(r), charsetSet: true}
	related := r.permille(150)
	b := c.beginMultipart("multipart/alternative", "")
	c.nextPart(b)
	c.textPart(seed, n, o)
	c.nextPart(b)
	o.html = true
	if related {
		c.related(seed, n, o)
	} else {
		c.textPart(seed, n, o)
	}
	c.endMultipart(b)
}

// related is HTML with the images it shows (RFC 2387).
func (c *msgCtx) related(seed uint64, n int, o textOpts) {
	r := &c.r
	cids := make([]string, r.between(1, 2))
	for k := range cids {
		id := []byte("image00")
		id = strconv.AppendInt(id, int64(k+1), 10)
		id = append(id, ".png@01D9"...)
		id = appendHexUpper(id, r, 4)
		id = append(id, '.')
		id = appendHexUpper(id, r, 8)
		cids[k] = string(id)
	}
	b := c.beginMultipart("multipart/related", `type="text/html"`)
	c.nextPart(b)
	o.cids = cids
	c.textPart(seed, n, o)
	for k, cid := range cids {
		c.nextPart(b)
		h := &c.h
		name := cid[:len("image001.png")]
		h.b = append(h.b, "Content-Type: image/png; name=\""...)
		h.b = append(h.b, name...)
		h.b = append(h.b, "\"\r\nContent-Disposition: inline; filename=\""...)
		h.b = append(h.b, name...)
		h.b = append(h.b, "\"\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <"...)
		h.b = append(h.b, cid...)
		h.b = append(h.b, ">\r\n"...)
		c.endHeader()
		size := r.logUniform(1000, 40000)
		if k > 0 {
			size /= 4
		}
		c.base64Filler(r.next(), size, "\x89PNG\r\n\x1a\n", false)
	}
	c.endMultipart(b)
}

func (c *msgCtx) mixed(reply bool) {
	r := &c.r
	b := c.beginMultipart("multipart/mixed", "")
	c.nextPart(b)
	if r.permille(400) {
		c.alternative(reply)
	} else {
		c.textPart(r.next(), textSize(r), textOpts{reply: reply})
	}
	k := attachCount(r)
	huge := r.permille(6)
	if c.depth > 0 {
		k, huge = 1, false
	}
	for j := range k {
		n := attachSize(r)
		switch {
		case j == 0 && huge:
			n = r.logUniform(3_600_000, 14_500_000)
		case c.depth > 0:
			n = min(n, 30000)
		}
		c.nextPart(b)
		c.attachment(n)
	}
	c.endMultipart(b)
}

// forward is a short note and the forwarded message as message/rfc822
// (RFC 2046 5.2.1).
func (c *msgCtx) forward(m *meta) {
	r := &c.r
	h := &c.h
	b := c.beginMultipart("multipart/mixed", "")
	c.nextPart(b)
	c.textPart(r.next(), r.logUniform(100, 1500), textOpts{})
	c.nextPart(b)
	h.b = append(h.b, "Content-Type: message/rfc822\r\n"...)
	if r.permille(600) {
		h.b = append(h.b, "Content-Disposition: attachment;\r\n filename=\"forwarded message.eml\"\r\n"...)
	} else {
		h.b = append(h.b, "Content-Disposition: inline\r\n"...)
	}
	c.endHeader()

	seed := r.next()
	outer := c.r
	c.r = rng{seed}
	c.depth++
	c.nestedMessage(m.date)
	c.depth--
	c.r = outer
	c.endMultipart(b)
}

// nestedMessage is a message inside a message/rfc822 part: older than the
// one around it, with its own subject and sometimes its own thread.
func (c *msgCtx) nestedMessage(outer time.Time) {
	r := &c.r
	date := outer.Add(-time.Duration(r.between(600, 30*86400)) * time.Second)
	nm := meta{date: date, id: appendMessageID(nil, r, date), subject: c.g.subjectBase(r.intn(1 << 30))}
	if r.permille(300) {
		for range r.between(1, 3) {
			nm.refs = append(nm.refs, appendMessageID(nil, r, date))
		}
	}
	structure := KindPlain
	switch u := r.intn(100); {
	case c.depth == 1 && r.permille(250):
		structure = KindForwarded
	case u < 60:
	case u < 90:
		structure = KindAlternative
	default:
		structure = KindAttachments
	}
	c.message(structure, &nm)
}

const (
	csASCII = iota
	csLatin1
	csUTF8
)

type textOpts struct {
	html       bool
	reply      bool     // quote the parent
	bare       bool     // no MIME fields at all (RFC 5322 without MIME)
	cids       []string // inline images the HTML shows
	charset    int
	charsetSet bool // charset is chosen already
	flowed     bool // RFC 3676 format=flowed
}

// drawCharset draws the charset of a text: 75% ASCII, 7% ISO-8859-1, 18%
// UTF-8.
func drawCharset(r *rng) int {
	switch u := r.intn(100); {
	case u >= 82:
		return csUTF8
	case u >= 75:
		return csLatin1
	}
	return csASCII
}

var charsetNames = [...][]string{
	csASCII:  {"us-ascii", `"us-ascii"`, "utf-8", "UTF-8"},
	csLatin1: {"iso-8859-1", "ISO-8859-1", "windows-1252"},
	csUTF8:   {"utf-8", "UTF-8", `"utf-8"`},
}

// textPart writes a text/plain or text/html part of about n octets whose
// words come from seed.
func (c *msgCtx) textPart(seed uint64, n int, o textOpts) {
	r := &c.r
	h := &c.h
	switch {
	case o.bare:
		o.charset = csASCII
	case !o.charsetSet:
		o.charset = drawCharset(r)
	}
	cte := pickCTE(r, o.charset, o.html)
	if o.bare {
		cte = ""
	}
	if c.depth > 0 && cte == "8bit" {
		cte = "quoted-printable" // keep message/rfc822 parts 7bit
	}
	o.flowed = !o.html && !o.bare && (cte == "" || cte == "7bit" || cte == "8bit") && r.permille(100)

	// A wrong Content-Transfer-Encoding: the content is written as it is,
	// whatever the label says.
	label, raw, wrong := cte, false, -1
	if c.fault == KindBrokenWrongEncoding {
		c.fault = KindPlain
		wrong = r.intn(3)
		raw = true
		switch wrong {
		case 0:
			label = "base64"
		case 1:
			o.charset, label = csUTF8, "7bit"
		case 2:
			label = "quoted-printable"
		}
	}

	if !o.bare {
		h.field("Content-Type")
		if o.html {
			h.tokString("", "text/html")
		} else {
			h.tokString("", "text/plain")
		}
		h.b = append(h.b, "; charset="...)
		h.b = append(h.b, pick(r, charsetNames[o.charset])...)
		if o.flowed {
			h.tokString(";", "format=flowed")
		}
		h.end()
		if label != "" {
			h.b = append(h.b, "Content-Transfer-Encoding: "...)
			h.b = append(h.b, label...)
			h.b = append(h.b, "\r\n"...)
		}
	}
	c.endHeader()

	tb := &c.tb
	tb.reset(o.charset == csLatin1, cte == "quoted-printable" && !raw, c.s.dry)
	tb.text(seed, min(n, c.limit), o)
	switch wrong {
	case 1:
		tb.addString("Grüße ☕\r\n")
	case 2:
		// Unencoded '=' as a misconfigured mailer leaves them; "=ma" is no
		// quoted-printable escape.
		tb.addString("https://shop.example/t?u=mailing&id=42&x=zz\r\n")
	}
	before := c.s.n
	if cte == "base64" && !raw {
		c.writeBase64(tb)
	} else {
		c.s.text(tb)
	}
	c.s.fillers = append(c.s.fillers, filler{n: n, enc: c.s.n - before})
}

// pickCTE draws the Content-Transfer-Encoding mailers use for such a text;
// "" leaves the field out (7bit, RFC 2045 6.1).
func pickCTE(r *rng, charset int, html bool) string {
	u := r.intn(100)
	switch {
	case charset == csASCII && !html:
		switch {
		case u < 40:
			return ""
		case u < 75:
			return "7bit"
		case u < 95:
			return "quoted-printable"
		}
		return "base64"
	case charset == csASCII:
		switch {
		case u < 40:
			return "7bit"
		case u < 90:
			return "quoted-printable"
		}
		return "base64"
	case charset == csLatin1:
		if u < 50 {
			return "8bit"
		}
		return "quoted-printable"
	case html:
		switch {
		case u < 15:
			return "8bit"
		case u < 75:
			return "quoted-printable"
		}
		return "base64"
	}
	switch {
	case u < 40:
		return "8bit"
	case u < 80:
		return "quoted-printable"
	}
	return "base64"
}

// writeBase64 writes the text of tb in base64 lines of 76 characters
// (RFC 2045 6.8).
func (c *msgCtx) writeBase64(tb *textBuilder) {
	if c.s.dry {
		c.s.n += base64Len(tb.size)
		return
	}
	b := tb.dst
	for len(b) > 0 {
		k := min(len(b), 57*64)
		encodeLines(c.s.grow(int(base64Len(k))), b[:k])
		c.s.flushFull()
		b = b[k:]
	}
}

// encodeLines base64-encodes src into dst as CRLF-ended lines of 76
// characters and returns the length written.
func encodeLines(dst, src []byte) int {
	o := 0
	for off := 0; off < len(src); off += 57 {
		e := min(off+57, len(src))
		base64.StdEncoding.Encode(dst[o:], src[off:e])
		o += base64.StdEncoding.EncodedLen(e - off)
		dst[o], dst[o+1] = '\r', '\n'
		o += 2
	}
	return o
}

// base64Len is the length of n octets written by encodeLines.
func base64Len(n int) int64 {
	l := int64(n/57) * 78
	if rem := n % 57; rem > 0 {
		l += int64((rem+2)/3*4 + 2)
	}
	return l
}

// base64Filler writes n pseudo-random octets behind magic, in base64. When
// truncate is set the last line loses a character, so the base64 does not
// decode. Counting (a dry sink) does not make the octets.
func (c *msgCtx) base64Filler(seed uint64, n int, magic string, truncate bool) {
	n = min(n, c.limit)
	if truncate {
		n = max(n, 1)
	}
	s := c.s
	before := s.n
	r := rng{seed}
	var raw [57 * 64]byte
	for done := 0; done < n; {
		if s.dry {
			s.n += base64Len(n) - base64Len(done)
			if truncate {
				s.n--
			}
			break
		}
		k := min(n-done, len(raw))
		for j := 0; j < k; j += 8 {
			binary.LittleEndian.PutUint64(raw[j:j+8], r.next())
		}
		if done == 0 {
			copy(raw[:k], magic)
		}
		done += k
		out := s.grow(int(base64Len(k)))
		encodeLines(out, raw[:k])
		if truncate && done == n {
			// Cut the last character of the last line.
			o := len(out)
			out[o-3], out[o-2] = '\r', '\n'
			s.buf = s.buf[:len(s.buf)-1]
			s.n--
		}
		s.flushFull()
	}
	s.fillers = append(s.fillers, filler{n: n, enc: s.n - before})
}

// attachment writes a part that carries a file (RFC 2183) of n octets.
func (c *msgCtx) attachment(n int) {
	r := &c.r
	h := &c.h
	t := pick(r, attachTypes)
	truncate := false
	if c.fault == KindBrokenTruncatedBase64 {
		c.fault = KindPlain
		truncate = true
		if !t.binary {
			t = attachTypes[0]
		}
	}
	seed := r.next()
	useB64 := t.binary || r.permille(600)

	// The file name. Non-ASCII names are sent as mailers send them: RFC 2231
	// (with continuations when long) or, against the RFCs but common, as
	// RFC 2047 encoded-words in a quoted string.
	intl := r.permille(350)
	name := c.tok[:0]
	if intl {
		name = append(name, pick(r, fileBasesIntl)...)
	} else {
		name = append(name, pick(r, fileBases)...)
	}
	name = append(name, '.')
	name = append(name, t.ext...)
	c.tok = name
	style := r.intn(100)

	h.field("Content-Type")
	h.tokString("", t.mime)
	if !t.binary {
		h.b = append(h.b, "; charset=utf-8"...)
	}
	if r.permille(700) {
		h.b = append(h.b, ';')
		c.quotedName("\r\n name=", name, intl)
	}
	h.end()

	h.field("Content-Disposition")
	h.tokString("", "attachment")
	h.b = append(h.b, ';')
	switch {
	case !intl && tokenSafe(name) && style < 25:
		h.b = append(h.b, "\r\n filename="...)
		h.b = append(h.b, name...)
	case intl && style < 60:
		c.rfc2231Name(name)
	default:
		c.quotedName("\r\n filename=", name, intl)
	}
	if r.permille(150) && t.binary {
		h.b = append(h.b, "; size="...)
		h.b = strconv.AppendInt(h.b, int64(min(n, c.limit)), 10)
	}
	h.end()
	if useB64 {
		h.b = append(h.b, "Content-Transfer-Encoding: base64\r\n"...)
	} else {
		h.b = append(h.b, "Content-Transfer-Encoding: 7bit\r\n"...)
	}
	if r.permille(200) {
		h.b = append(h.b, "Content-ID: <f_"...)
		h.b = appendHex(h.b, r, 12)
		h.b = append(h.b, ">\r\n"...)
	}
	c.endHeader()

	if t.binary {
		c.base64Filler(seed, n, t.magic, truncate)
		return
	}
	n = min(n, 200<<10) // nobody mails megabytes of CSV
	tb := &c.tb
	tb.reset(false, false, c.s.dry)
	if t.ext == "csv" {
		tb.lines(seed, min(n, c.limit), "date,account,description,quantity,amount,currency\r\n", csvPool())
	} else {
		tb.lines(seed, min(n, c.limit), "", logPool())
	}
	before := c.s.n
	if useB64 {
		c.writeBase64(tb)
	} else {
		c.s.text(tb)
	}
	c.s.fillers = append(c.s.fillers, filler{n: n, enc: c.s.n - before})
}

// quotedName appends param (with its leading fold or space) and name as a
// quoted string, RFC 2047 encoded if not ASCII.
func (c *msgCtx) quotedName(param string, name []byte, intl bool) {
	h := &c.h
	h.b = append(h.b, param...)
	h.b = append(h.b, '"')
	if intl {
		h.b = appendEncodedWords(h.b, string(name), false, c.r.permille(300))
	} else {
		h.b = append(h.b, name...)
	}
	h.b = append(h.b, '"')
}

// rfc2231Name appends name as an RFC 2231 extended filename parameter,
// split into continuations of at most 40 characters when long.
func (c *msgCtx) rfc2231Name(name []byte) {
	h := &c.h
	var buf [512]byte
	v := append(buf[:0], "UTF-8''"...)
	for _, b := range name {
		if attrChar(b) {
			v = append(v, b)
		} else {
			v = append(v, '%', hexUpper[b>>4], hexUpper[b&15])
		}
	}
	if len(v) <= 60 {
		h.b = append(h.b, "\r\n filename*="...)
		h.b = append(h.b, v...)
		return
	}
	for k := 0; len(v) > 0; k++ {
		end := min(40, len(v))
		// Do not split a %XX escape.
		if end < len(v) && v[end-1] == '%' {
			end--
		} else if end < len(v) && end >= 2 && v[end-2] == '%' {
			end -= 2
		}
		if k > 0 {
			h.b = append(h.b, ';')
		}
		h.b = append(h.b, "\r\n filename*"...)
		h.b = strconv.AppendInt(h.b, int64(k), 10)
		h.b = append(h.b, "*="...)
		h.b = append(h.b, v[:end]...)
		v = v[end:]
	}
}

// attrChar reports whether b may stand for itself in an RFC 2231 value.
func attrChar(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
		b == '!' || b == '#' || b == '$' || b == '&' || b == '+' || b == '-' || b == '.' ||
		b == '^' || b == '_' || b == '`' || b == '|' || b == '~'
}

// tokenSafe reports whether s can be a MIME parameter value without quotes.
func tokenSafe(s []byte) bool {
	for _, b := range s {
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '.' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

// beginMultipart adds a multipart Content-Type (RFC 2046 5.1) to the header,
// ends the header and returns the boundary that delimits the parts.
func (c *msgCtx) beginMultipart(typ, param string) string {
	r := &c.r
	h := &c.h
	b := c.boundary()
	declared, omit := b, false
	switch c.fault {
	case KindBrokenUndeclaredBoundary:
		c.fault = KindPlain
		if r.permille(500) {
			omit = true
		} else {
			declared = c.boundary()
		}
	case KindBrokenNoClosingBoundary:
		c.fault = KindPlain
		c.unclosed = b
	}
	h.field("Content-Type")
	h.tokString("", typ)
	if param != "" {
		h.tokString(";", param)
	}
	if !omit {
		h.b = append(h.b, ';')
		if h.col+len(declared)+12 > 78 {
			h.b = append(h.b, "\r\n\t"...)
		} else {
			h.b = append(h.b, ' ')
		}
		h.b = append(h.b, "boundary=\""...)
		h.b = append(h.b, declared...)
		h.b = append(h.b, '"')
	}
	h.end()
	c.endHeader()
	if r.permille(400) {
		c.s.str("This is a multi-part message in MIME format.\r\n")
	}
	return b
}

func (c *msgCtx) nextPart(b string) {
	c.s.str("--")
	c.s.str(b)
	c.s.str("\r\n")
}

func (c *msgCtx) endMultipart(b string) {
	if b == c.unclosed {
		return
	}
	c.s.str("--")
	c.s.str(b)
	c.s.str("--\r\n")
}

// boundary makes a boundary in the style of one of the common mailers.
func (c *msgCtx) boundary() string {
	r := &c.r
	c.nbound++
	var buf [80]byte
	b := buf[:0]
	switch r.intn(5) {
	case 0: // JavaMail
		b = append(b, "----=_Part_"...)
		b = strconv.AppendInt(b, int64(c.nbound), 10)
		b = append(b, '_')
		b = strconv.AppendInt(b, int64(r.between(100000000, 999999999)), 10)
		b = append(b, '.')
		b = strconv.AppendInt(b, 1450000000000+int64(r.intn(300_000_000))*1000+int64(r.intn(1000)), 10)
	case 1: // Gmail
		b = append(b, "000000000000"...)
		b = appendHex(b, r, 16)
	case 2: // Outlook
		b = append(b, "_00"...)
		b = strconv.AppendInt(b, int64(c.nbound-1), 10)
		b = append(b, "_DB6PR07MB"...)
		b = appendHexUpper(b, r, 20)
		b = append(b, '_')
	case 3: // Apple Mail
		b = append(b, "Apple-Mail=_"...)
		b = appendUUID(b, r)
	default: // Roundcube
		b = append(b, "=_"...)
		b = appendHex(b, r, 32)
	}
	return string(b)
}

func (c *msgCtx) endHeader() {
	c.h.b = append(c.h.b, "\r\n"...)
	c.s.write(c.h.b)
	c.h.b = c.h.b[:0]
}
