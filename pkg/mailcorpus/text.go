package mailcorpus

import (
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Names for texts in narrower charsets than UTF-8.
var (
	asciiFirst, asciiLast = filterNames(firstNames, isASCII), filterNames(lastNames, isASCII)
	latinFirst, latinLast = filterNames(firstNames, isLatin1), filterNames(lastNames, isLatin1)
)

func filterNames(ps []person, ok func(string) bool) []person {
	var out []person
	for _, p := range ps {
		if ok(p.name) {
			out = append(out, p)
		}
	}
	return out
}

func namesFor(charset int) (first, last []person) {
	switch charset {
	case csASCII:
		return asciiFirst, asciiLast
	case csLatin1:
		return latinFirst, latinLast
	}
	return firstNames, lastNames
}

func pickWord(r *rng, charset int) string {
	switch charset {
	case csLatin1:
		if r.permille(150) {
			return pick(r, latin)
		}
	case csUTF8:
		switch u := r.intn(100); {
		case u < 10:
			return pick(r, latin)
		case u < 25:
			return pick(r, world)
		}
	}
	return pick(r, english)
}

var sentenceEnds = []byte(".....?!")

const htmlPara = `<p style="margin:0 0 12px 0;font-family:Arial,Helvetica,sans-serif;font-size:14px">`

// Texts are put together from paragraphs drawn at random from fixed pools
// of 1024, one pool per charset and style, rather than word by word:
// copying a paragraph costs little, so 100 000-message mailboxes fill fast.
// The pools are the same for every seed; which paragraphs a text takes
// depends on the seed.
const poolParas = 1024

const (
	stylePlain = iota
	styleFlowed
	styleQuoted
	styleHTML
	numStyles
)

// textPool is the paragraphs of one charset and style, in the charset's
// octets with CRLF line ends, and the same quoted-printable encoded. Each
// paragraph ends its lines, so encoding a text paragraph by paragraph gives
// what encoding it whole would.
type textPool struct {
	raw, qp [][]byte
}

var pools [3][numStyles]struct {
	once sync.Once
	p    textPool
}

func poolFor(charset, style int) *textPool {
	e := &pools[charset][style]
	e.once.Do(func() {
		o := textOpts{charset: charset, html: style == styleHTML, flowed: style == styleFlowed}
		for k := range poolParas {
			// Paragraph k has the same words in every style, so the HTML
			// of a multipart/alternative says what its text says.
			r := rng{mix(uint64(charset)+100, uint64(k))}
			p := paragraph(nil, &r, o, style == styleQuoted)
			if charset == csLatin1 {
				p = toLatin1(nil, p)
			}
			e.p.raw = append(e.p.raw, p)
			e.p.qp = append(e.p.qp, appendQP(nil, p))
		}
	})
	return &e.p
}

// textBuilder puts a text together in dst, in its charset and, for
// quoted-printable, already encoded. A dry builder only counts: Size and
// the fitting of a message to its cap need the length, not the text.
type textBuilder struct {
	dst    []byte
	size   int  // octets of dst, kept or not
	raw    int  // octets of text so far, before encoding
	latin1 bool // pieces are converted from UTF-8 to ISO-8859-1
	qp     bool
	dry    bool
	piece  []byte // a piece of text being composed
	conv   []byte
	enc    []byte
}

func (t *textBuilder) reset(latin1, qp, dry bool) {
	t.dst, t.size, t.raw, t.latin1, t.qp, t.dry = t.dst[:0], 0, 0, latin1, qp, dry
}

func (t *textBuilder) add(b []byte) {
	t.size += len(b)
	if !t.dry {
		t.dst = append(t.dst, b...)
	}
}

func (t *textBuilder) addString(s string) {
	t.size += len(s)
	if !t.dry {
		t.dst = append(t.dst, s...)
	}
}

// put adds the piece composed in t.piece; it ends in CRLF.
func (t *textBuilder) put() {
	s := t.piece
	t.raw += len(s)
	if t.latin1 {
		t.conv = toLatin1(t.conv[:0], s)
		s = t.conv
	}
	if t.qp {
		t.enc = appendQP(t.enc[:0], s)
		s = t.enc
	}
	t.add(s)
	t.piece = t.piece[:0]
}

func (t *textBuilder) para(p *textPool, k int) {
	t.raw += len(p.raw[k])
	if t.qp {
		t.add(p.qp[k])
	} else {
		t.add(p.raw[k])
	}
}

// text puts together a text of about n octets (at least one paragraph)
// from seed: a greeting, paragraphs wrapped at 72 columns, for replies an
// attribution line and quoted text, a signature. With o.html it is an HTML
// document.
func (t *textBuilder) text(seed uint64, n int, o textOpts) {
	r := rng{seed}
	first, last := namesFor(o.charset)
	style := stylePlain
	switch {
	case o.html:
		style = styleHTML
	case o.flowed:
		style = styleFlowed
	}
	body, quoted := poolFor(o.charset, style), poolFor(o.charset, styleQuoted)
	if o.html {
		quoted = body
		t.piece = append(t.piece, "<html>\r\n<head>\r\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset="...)
		if o.charset == csLatin1 {
			t.piece = append(t.piece, "iso-8859-1"...)
		} else {
			t.piece = append(t.piece, "utf-8"...)
		}
		t.piece = append(t.piece, "\">\r\n</head>\r\n<body>\r\n<div dir=\"ltr\">\r\n"...)
		t.put()
	}
	if r.permille(600) {
		if o.html {
			t.piece = append(t.piece, "<p>"...)
		}
		t.piece = append(t.piece, pick(&r, []string{"Hi ", "Hello ", "Dear ", "Hallo ", "Hey "})...)
		t.piece = append(t.piece, pick(&r, first).name...)
		t.piece = append(t.piece, ',')
		if o.html {
			t.piece = append(t.piece, "</p>\r\n"...)
		} else {
			t.piece = append(t.piece, "\r\n\r\n"...)
		}
		t.put()
	}
	quoteAt := -1
	if o.reply {
		quoteAt = n * r.between(30, 80) / 100
	}
	quoting := false
	for k := 0; k == 0 || t.raw < n; k++ {
		if quoteAt >= 0 && !quoting && t.raw >= quoteAt {
			t.piece = attribution(t.piece, &r, first, last, o.html)
			t.put()
			quoting = true
		}
		if quoting {
			t.para(quoted, r.intn(poolParas))
		} else {
			t.para(body, r.intn(poolParas))
		}
	}
	if quoting && o.html {
		t.piece = append(t.piece, "</blockquote>\r\n</div>\r\n"...)
		t.put()
	}
	if !quoting && r.permille(500) {
		if o.html {
			t.piece = append(t.piece, "<p>-- <br>\r\n"...)
		} else {
			t.piece = append(t.piece, "-- \r\n"...)
		}
		t.piece = append(t.piece, pick(&r, first).name...)
		t.piece = append(t.piece, ' ')
		t.piece = append(t.piece, pick(&r, last).name...)
		if o.html {
			t.piece = append(t.piece, "<br>"...)
		}
		t.piece = append(t.piece, "\r\n"...)
		t.piece = append(t.piece, pick(&r, []string{"Senior Engineer", "Head of Sales", "Office Manager", "CTO", "Account Executive"})...)
		t.piece = append(t.piece, " | "...)
		t.piece = append(t.piece, pick(&r, companies)...)
		if o.html {
			t.piece = append(t.piece, "</p>"...)
		}
		t.piece = append(t.piece, "\r\n"...)
		t.put()
	}
	if o.html {
		for _, cid := range o.cids {
			t.piece = append(t.piece, "<p><img src=\"cid:"...)
			t.piece = append(t.piece, cid...)
			t.piece = append(t.piece, "\" alt=\"image\" width=\"600\" height=\"200\"></p>\r\n"...)
		}
		t.piece = append(t.piece, "</div>\r\n</body>\r\n</html>\r\n"...)
		t.put()
	}
}

// appendQP appends src quoted-printable encoded (RFC 2045 6.7): octets
// outside printable ASCII, '=' and whitespace before a line end escaped,
// lines kept within 76 characters by soft line breaks. CRLF in src is a
// line end.
func appendQP(dst, src []byte) []byte {
	col := 0
	for k := 0; k < len(src); k++ {
		b := src[k]
		if b == '\r' && k+1 < len(src) && src[k+1] == '\n' {
			dst = append(dst, '\r', '\n')
			k++
			col = 0
			continue
		}
		escape := b == '=' || b < ' ' && b != '\t' || b > '~'
		if b == ' ' || b == '\t' {
			escape = k+1 == len(src) || src[k+1] == '\r'
		}
		w := 1
		if escape {
			w = 3
		}
		if col+w > 75 {
			dst = append(dst, "=\r\n"...)
			col = 0
		}
		if escape {
			dst = append(dst, '=', hexUpper[b>>4], hexUpper[b&15])
		} else {
			dst = append(dst, b)
		}
		col += w
	}
	return dst
}

// attribution is the line a reply puts above the quoted text.
func attribution(dst []byte, r *rng, first, last []person, html bool) []byte {
	f, l := pick(r, first), pick(r, last)
	if html {
		dst = append(dst, "<div class=\"gmail_quote\">"...)
	}
	dst = append(dst, "On "...)
	t := time.Date(2016+r.intn(9), time.Month(1+r.intn(12)), 1+r.intn(28), r.intn(24), r.intn(60), 0, 0, time.UTC)
	dst = t.AppendFormat(dst, "Mon, 2 Jan 2006 at 15:04")
	dst = append(dst, ", "...)
	dst = append(dst, f.name...)
	dst = append(dst, ' ')
	dst = append(dst, l.name...)
	if html {
		dst = append(dst, " &lt;"...)
	} else {
		dst = append(dst, " <"...)
	}
	dst = append(dst, f.ascii...)
	dst = append(dst, '.')
	dst = append(dst, l.ascii...)
	dst = append(dst, '@')
	dst = append(dst, pick(r, domains)...)
	if html {
		dst = append(dst, "&gt; wrote:<br>\r\n<blockquote type=\"cite\">\r\n"...)
	} else {
		dst = append(dst, "> wrote:\r\n"...)
	}
	return dst
}

// paragraph appends one paragraph of 1–5 sentences.
func paragraph(dst []byte, r *rng, o textOpts, quoting bool) []byte {
	prefix, width := "", 72
	if o.html {
		dst = append(dst, htmlPara...)
		dst = append(dst, "\r\n"...)
		width = 76
	} else if quoting {
		prefix = "> "
	}
	lineStart := len(dst)
	dst = append(dst, prefix...)
	fresh := true
	for range r.between(1, 5) {
		nw := r.between(4, 16)
		for w := range nw {
			word := pickWord(r, o.charset)
			v := r.next() // drawn in every style, so that all draw alike
			link := o.html && v%1000 < 15
			need := len(word) + 1
			if link {
				need += 47
			}
			if !fresh {
				if len(dst)-lineStart+1+need > width {
					if o.flowed {
						dst = append(dst, ' ') // a soft break (RFC 3676 4.2)
					}
					dst = append(dst, "\r\n"...)
					lineStart = len(dst)
					dst = append(dst, prefix...)
				} else {
					dst = append(dst, ' ')
				}
			}
			fresh = false
			if link {
				dst = append(dst, "<a href=\"https://www.example.com/p/"...)
				for range 12 {
					v >>= 4
					dst = append(dst, hexLower[v&15])
				}
				dst = append(dst, "\">"...)
			}
			at := len(dst)
			dst = append(dst, word...)
			if w == 0 {
				dst[at] = upper(dst[at])
			}
			if link {
				dst = append(dst, "</a>"...)
			}
			if w == nw-1 {
				dst = append(dst, pick(r, sentenceEnds))
			}
		}
	}
	dst = append(dst, "\r\n"...)
	switch {
	case o.html:
		dst = append(dst, "</p>\r\n"...)
	case quoting:
		dst = append(dst, ">\r\n"...)
	default:
		dst = append(dst, "\r\n"...)
	}
	return dst
}

// Attachments of CSV and log text are drawn line by line from pools too.
var (
	csvOnce, logOnce   sync.Once
	csvLines, logLines [][]byte
)

func csvPool() [][]byte {
	csvOnce.Do(func() {
		r := rng{mix(200, 1)}
		for range poolParas {
			var l []byte
			l = appendDay(l, &r)
			l = append(l, ",ACME-"...)
			l = strconv.AppendInt(l, int64(r.between(10000, 99999)), 10)
			l = append(l, ',')
			l = appendWords(l, &r, english, r.between(1, 4))
			l = append(l, ',')
			l = strconv.AppendInt(l, int64(r.between(1, 20)), 10)
			l = append(l, ',')
			l = strconv.AppendInt(l, int64(r.between(1, 9999)), 10)
			l = append(l, '.')
			l = appendPad2(l, r.intn(100))
			l = append(l, pick(&r, []string{",EUR\r\n", ",USD\r\n", ",GBP\r\n"})...)
			csvLines = append(csvLines, l)
		}
	})
	return csvLines
}

func logPool() [][]byte {
	logOnce.Do(func() {
		r := rng{mix(200, 2)}
		for range poolParas {
			var l []byte
			l = appendDay(l, &r)
			l = append(l, 'T')
			l = appendPad2(l, r.intn(24))
			l = append(l, ':')
			l = appendPad2(l, r.intn(60))
			l = append(l, ':')
			l = appendPad2(l, r.intn(60))
			l = append(l, pick(&r, []string{"Z INFO  ", "Z INFO  ", "Z WARN  ", "Z ERROR ", "Z DEBUG "})...)
			l = append(l, pick(&r, []string{"storage", "inbound", "access", "queue", "etcd"})...)
			l = append(l, ": "...)
			l = appendWords(l, &r, english, r.between(3, 9))
			l = append(l, " id="...)
			l = appendHex(l, &r, 8)
			l = append(l, " took="...)
			l = strconv.AppendInt(l, int64(r.between(1, 5000)), 10)
			l = append(l, "ms\r\n"...)
			logLines = append(logLines, l)
		}
	})
	return logLines
}

// lines puts together about n octets of lines from pool, after header.
func (t *textBuilder) lines(seed uint64, n int, header string, pool [][]byte) {
	r := rng{seed}
	t.addString(header)
	for k := 0; k == 0 || t.size < n; k++ {
		t.add(pool[r.intn(len(pool))])
	}
}

func appendDay(dst []byte, r *rng) []byte {
	dst = strconv.AppendInt(dst, int64(2016+r.intn(9)), 10)
	dst = append(dst, '-')
	dst = appendPad2(dst, 1+r.intn(12))
	dst = append(dst, '-')
	return appendPad2(dst, 1+r.intn(28))
}

func appendPad2(dst []byte, v int) []byte {
	return append(dst, byte('0'+v/10), byte('0'+v%10))
}

// toLatin1 appends UTF-8 text src in ISO-8859-1; the texts given to it
// use only characters that fit.
func toLatin1(dst, src []byte) []byte {
	for len(src) > 0 {
		ch, size := utf8.DecodeRune(src)
		src = src[size:]
		if ch > 0xff {
			ch = '?'
		}
		dst = append(dst, byte(ch))
	}
	return dst
}
