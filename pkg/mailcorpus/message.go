package mailcorpus

import (
	"slices"
	"strconv"
	"time"
)

// msgCtx is the making of one message. Every choice is drawn from r in a
// fixed order; the size of a text or attachment never changes what is
// drawn, so rendering again with a smaller limit gives the same message
// with less content.
type msgCtx struct {
	g     *Generator
	s     *sink
	r     rng
	limit int  // most raw octets of any one text or attachment
	fault Kind // a broken kind whose fault is still to be planted; KindPlain when none
	depth int  // 0 for the message, 1 and 2 inside message/rfc822 parts

	nbound   int    // boundaries made so far, to keep nested ones distinct
	unclosed string // the boundary whose closing delimiter is left out

	h    hdr
	tb   textBuilder
	name []byte // a display name
	tok  []byte // one header token
	from []byte // the From mailbox
}

// meta is what a message's headers say about its place in the corpus.
type meta struct {
	date    time.Time
	id      []byte
	refs    [][]byte // References, oldest first; the last one is the parent
	subject string   // the thread's subject, without Re:
}

// render makes message i into s, cutting each text and attachment to at
// most limit raw octets. c keeps only its buffers from earlier messages.
func (g *Generator) render(c *msgCtx, s *sink, i int, limit int) {
	*c = msgCtx{g: g, s: s, r: g.msgRng(i), limit: limit,
		h: hdr{b: c.h.b[:0]}, tb: c.tb, name: c.name[:0], tok: c.tok[:0], from: c.from[:0]}
	kind := g.drawKind(&c.r)
	structure := kind
	if kind.Broken() {
		c.fault = kind
		structure = c.structureFor(kind)
	}
	m := meta{date: g.date(i), id: g.messageID(nil, i), subject: g.subjectBase(g.root(i))}
	for j := g.parent(i); j >= 0; j = g.parent(j) {
		m.refs = append(m.refs, g.messageID(nil, j))
	}
	slices.Reverse(m.refs)
	if len(m.refs) > 20 {
		// MUAs trim long References to the root and the latest (RFC 5322 3.6.4).
		m.refs = append(m.refs[:1], m.refs[len(m.refs)-19:]...)
	}
	c.message(structure, &m)
}

// structureFor picks the body a broken message has around its fault.
func (c *msgCtx) structureFor(k Kind) Kind {
	r := &c.r
	switch k {
	case KindBrokenHeaderOnly:
		return KindPlain
	case KindBrokenNoClosingBoundary, KindBrokenUndeclaredBoundary:
		if r.permille(500) {
			return KindAlternative
		}
		return KindAttachments
	case KindBrokenWrongEncoding:
		if r.permille(700) {
			return KindPlain
		}
		return KindAlternative
	case KindBrokenTruncatedBase64:
		return KindAttachments
	}
	switch u := r.intn(100); {
	case u < 60:
		return KindPlain
	case u < 85:
		return KindAlternative
	}
	return KindAttachments
}

// parent returns the message that message i replies to, or -1: 35% of messages
// reply to one of the 300 before them.
func (g *Generator) parent(i int) int {
	h := mix(g.kThread, uint64(i))
	if i <= 0 || h%1000 >= 350 {
		return -1
	}
	return i - 1 - int((h>>10)%uint64(min(i, 300)))
}

// root returns the first message of message i's thread.
func (g *Generator) root(i int) int {
	for p := g.parent(i); p >= 0; p = g.parent(i) {
		i = p
	}
	return i
}

var zones = func() []*time.Location {
	var zs []*time.Location
	for _, z := range []struct {
		name string
		min  int
	}{
		{"PST", -8 * 60}, {"MST", -7 * 60}, {"CST", -6 * 60}, {"EST", -5 * 60}, {"EDT", -4 * 60},
		{"BRT", -3 * 60}, {"UTC", 0}, {"GMT", 0}, {"CET", 60}, {"CEST", 120}, {"EET", 120},
		{"MSK", 180}, {"IST", 5*60 + 30}, {"CST", 8 * 60}, {"JST", 9 * 60}, {"AEST", 10 * 60},
		{"NZDT", 13 * 60},
	} {
		zs = append(zs, time.FixedZone(z.name, z.min*60))
	}
	return zs
}()

// date is when message i was sent: about 17 minutes after message i-1.
// Dates start again every million messages (32 years).
func (g *Generator) date(i int) time.Time {
	h := mix(g.kDate, uint64(i))
	sec := int64(i%1_000_000)*1020 + int64(h%960) - 480
	return g.start.Add(time.Duration(sec) * time.Second).In(zones[(h>>16)%uint64(len(zones))])
}

// messageID appends the Message-ID of message i.
func (g *Generator) messageID(dst []byte, i int) []byte {
	r := rng{mix(g.kID, uint64(i))}
	return appendMessageID(dst, &r, g.date(i))
}

// appendMessageID appends a msg-id (RFC 5322 3.6.4) in one of the forms
// common mailers use.
func appendMessageID(dst []byte, r *rng, date time.Time) []byte {
	dst = append(dst, '<')
	switch r.intn(5) {
	case 0: // many MTAs and webmails
		dst = appendHex(dst, r, 16)
		dst = append(dst, '.')
		dst = appendHex(dst, r, 8)
		dst = append(dst, '@')
		dst = append(dst, pick(r, domains)...)
	case 1: // Gmail
		dst = append(dst, "CA"...)
		dst = appendRandB64(dst, r, 40)
		dst = append(dst, "@mail.gmail.example"...)
	case 2: // Apple Mail, Thunderbird
		dst = appendUUID(dst, r)
		dst = append(dst, '@')
		dst = append(dst, pick(r, domains)...)
	case 3: // git send-email
		dst = date.UTC().AppendFormat(dst, "20060102150405")
		dst = append(dst, '.')
		dst = strconv.AppendInt(dst, int64(r.between(1000, 9999999)), 10)
		dst = append(dst, "-1-"...)
		dst = append(dst, pick(r, firstNames).ascii...)
		dst = append(dst, '@')
		dst = append(dst, pick(r, domains)...)
	default: // Exchange Online
		dst = append(dst, "DB6PR07MB"...)
		dst = strconv.AppendInt(dst, int64(r.between(1000, 9999)), 10)
		dst = appendHexUpper(dst, r, 16)
		dst = append(dst, "@DB6PR07MB"...)
		dst = strconv.AppendInt(dst, int64(r.between(1000, 9999)), 10)
		dst = append(dst, ".eurprd07.prod.outlook.example"...)
	}
	return append(dst, '>')
}

// subjectBase is the subject of the thread rooted at message root.
func (g *Generator) subjectBase(root int) string {
	r := rng{mix(g.kSubject, uint64(root))}
	var b []byte
	intl := false
	switch u := r.intn(100); {
	case u < 16:
		b = append(b, pick(&r, subjectPhrasesIntl)...)
		intl = true
	case u < 40:
		b = append(b, pick(&r, subjectPhrases)...)
	case u < 55:
		b = append(b, pick(&r, subjectPhrases)...)
		b = append(b, ": "...)
		b = appendWords(b, &r, english, r.between(2, 6))
	case u < 65:
		b = append(b, "[PROJ-"...)
		b = strconv.AppendInt(b, int64(r.between(100, 9999)), 10)
		b = append(b, "] "...)
		b = appendWords(b, &r, english, r.between(3, 8))
	case u < 72:
		b = append(b, "Invoice INV-"...)
		b = strconv.AppendInt(b, int64(r.between(100000, 999999)), 10)
		b = append(b, " from "...)
		b = append(b, pick(&r, companies)...)
	case u < 78:
		b = append(b, "Your order #"...)
		b = strconv.AppendInt(b, int64(r.between(100, 999)), 10)
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(r.between(1000000, 9999999)), 10)
		b = append(b, " has shipped"...)
	case u < 83:
		b = append(b, "Build failed: main #"...)
		b = strconv.AppendInt(b, int64(r.between(100, 99999)), 10)
		b = append(b, " ("...)
		b = appendHex(b, &r, 7)
		b = append(b, ')')
	default:
		b = appendWords(b, &r, english, r.between(2, 10))
		b[0] = upper(b[0])
	}
	if r.permille(100) { // long subjects, folded over several lines
		for n := r.between(100, 400); len(b) < n; {
			b = append(b, ' ')
			if intl && r.permille(300) {
				b = append(b, pick(&r, world)...)
			} else {
				b = append(b, pick(&r, english)...)
			}
		}
	} else if r.permille(20) && !intl { // a few ASCII subjects with one foreign word
		b = append(b, ' ')
		b = append(b, pick(&r, latin)...)
	}
	return string(b)
}

// message writes one message: the header, then its body.
func (c *msgCtx) message(structure Kind, m *meta) {
	r := &c.r
	h := &c.h
	top := c.depth == 0

	// The sender comes first: Return-Path and Received name it.
	var at, end int
	c.from, at, end = c.appendAddress(c.from[:0], true)
	sender := c.from[at:end]

	if top {
		if c.fault == KindBrokenNoColon && r.permille(500) {
			// An mbox separator left in front of the message.
			h.b = append(h.b, "From "...)
			h.b = append(h.b, sender...)
			h.b = append(h.b, ' ')
			h.b = m.date.UTC().AppendFormat(h.b, time.ANSIC)
			h.b = append(h.b, "\r\n"...)
			c.fault = KindPlain
		}
		if r.permille(900) {
			h.b = append(h.b, "Return-Path: <"...)
			h.b = append(h.b, sender...)
			h.b = append(h.b, ">\r\n"...)
		}
		hops := r.between(1, 4)
		for k := range hops {
			c.received(m.date.Add(time.Duration(hops-k)*time.Second), sender, k == 0)
		}
		if r.permille(300) {
			c.authResults(sender)
		}
		if r.permille(400) {
			c.dkim(sender, m.date)
		}
	} else if r.permille(300) {
		c.received(m.date.Add(2*time.Second), sender, false)
	}

	h.field("From")
	if c.fault == KindBroken8BitHeader && r.permille(500) {
		// A name in raw ISO-8859-1, as old mailers sent it.
		h.b = append(h.b, " J\xfcrgen M\xfcller <"...)
		h.b = append(h.b, sender...)
		h.b = append(h.b, '>')
	} else {
		h.tok("", c.from)
	}
	h.end()
	if r.permille(60) {
		h.field("Reply-To")
		c.tok, _, _ = c.appendAddress(c.tok[:0], false)
		h.tok("", c.tok)
		h.end()
	}

	n := r.between(1, 5)
	if top {
		n = recipientCount(r)
		c.s.rcpts = n
	}
	c.recipients(n)

	if c.fault == KindBrokenNoColon {
		h.b = append(h.b, pick(r, []string{
			"X-Mailer Microsoft Outlook 16.0",
			"This message was scanned for viruses",
			"Thread-Topic Quarterly report",
		})...)
		h.b = append(h.b, "\r\n"...)
		c.fault = KindPlain
	}

	list := ""
	if top && r.permille(100) {
		list = pick(r, listNames)
	}
	c.subject(m, list, structure == KindForwarded)

	h.field("Date")
	h.b = append(h.b, ' ')
	if c.fault == KindBrokenDate {
		h.b = c.appendBadDate(h.b, m.date)
		c.fault = KindPlain
	} else {
		h.b = c.appendDate(h.b, m.date)
	}
	h.end()

	h.field("Message-ID")
	h.tok("", m.id)
	h.end()
	if len(m.refs) > 0 {
		h.field("In-Reply-To")
		h.tok("", m.refs[len(m.refs)-1])
		h.end()
		h.field("References")
		for _, id := range m.refs {
			h.tok("", id)
		}
		h.end()
	}

	bare := structure == KindPlain && c.fault != KindBrokenWrongEncoding && r.permille(80)
	if !bare {
		h.b = append(h.b, "MIME-Version: 1.0\r\n"...)
	}
	if r.permille(500) {
		if r.permille(500) {
			h.field("X-Mailer")
		} else {
			h.field("User-Agent")
		}
		h.b = append(h.b, ' ')
		h.b = append(h.b, pick(r, mailers)...)
		h.end()
	}
	if list != "" {
		c.listHeaders(list)
	}
	if r.permille(50) {
		h.b = append(h.b, "X-Priority: 1 (Highest)\r\nImportance: High\r\n"...)
	}

	switch c.fault {
	case KindBrokenLongHeader:
		c.longHeader()
		c.fault = KindPlain
	case KindBrokenEmptyHeader:
		h.b = append(h.b, pick(r, []string{"Cc:", "X-Original-To:", "Organization:", "Reply-To: "})...)
		h.b = append(h.b, "\r\n"...)
		c.fault = KindPlain
	case KindBrokenHeaderOnly:
		h.b = append(h.b, "Content-Type: text/plain; charset=utf-8\r\n"...)
		c.s.write(h.b)
		h.b = h.b[:0]
		c.fault = KindPlain
		return
	}

	c.entity(structure, m, bare)
}
