// Package mailcorpus generates a deterministic, realistic email corpus for
// tests and benchmarks that need mailboxes of real size (100 000 messages)
// filled with messages of the shapes real mail has.
//
// Message i (i >= 0) of a generator is a pure function of (seed, i,
// options): nothing is stored, any message can be made on its own, in any
// order, from any goroutine, and the same seed gives the same bytes on
// every run and every Go version (the random generator is part of the
// package). Messages use CRLF line endings throughout; well-formed ones
// have no line longer than 998 octets (RFC 5322 2.1.1) and parse with
// net/mail and mime/multipart.
//
// # Distribution
//
// Kinds (Generator.Kind tells which one message i is):
//
//	45.0%  plain        text/plain only (8% of these without MIME fields)
//	 5.0%  html         text/html only
//	25.0%  alternative  multipart/alternative, text and HTML saying the same;
//	                    15% put the HTML in multipart/related with inline images
//	17.0%  attachments  multipart/mixed: a text (or, 40%, an alternative) part
//	                    and 1–6 attachments (60% one, 25% two, 10% three, 5% more)
//	 4.0%  forwarded    multipart/mixed with a note and a message/rfc822 part;
//	                    a quarter of those nest a second message in the first
//	 4.0%  broken       ten kinds at 0.4% each, see below
//
// Recipients: 1–50 across To and Cc (55% one, 15% two, 10% three, 12%
// 4–10, 6% 11–30, 2% 31–50; mean about 4). 40% of messages with more than
// one split them between To and Cc; 2% of those with two or more in To
// put them in a named group. Addresses are bare (22%), in angle brackets
// (4%), followed by a comment (2%), behind a display name (34%), a quoted
// display name with a comma (15%) or with escaped quotes (3%), or an RFC
// 2047 encoded-word name (20%, and every name with non-ASCII letters, in
// UTF-8 B or Q or ISO-8859-1 Q).
//
// Subjects: about 17% carry non-ASCII text as RFC 2047 encoded-words (UTF-8
// B or Q, ISO-8859-1 Q for some of those that fit it; 20% encode the "Re: "
// too); 10% are long (100–400 characters) and fold over several lines.
//
// Threads: 35% of messages are replies to one of the 300 messages before
// them: In-Reply-To and References name messages of the same corpus, and
// the subject is the thread's behind "Re:" (or "RE:", "AW:", ...).
//
// Other header fields: Date follows the index (about 17 minutes apart, from
// a day in 2016 chosen by the seed), in seven RFC 5322 forms (with and
// without day of week and seconds, zone comment, obsolete GMT zone and
// two-digit year). Message-IDs in the styles of five common mailers;
// Return-Path, 1–4 Received, DKIM-Signature (40%), Authentication-Results
// (30%), X-Mailer or User-Agent (50%) and mailing-list fields (10%) as on
// a delivered message.
//
// Bodies: text is 75% ASCII (7bit, some quoted-printable or base64), 7%
// ISO-8859-1 and 18% UTF-8 with words from many scripts and emoji (8bit,
// quoted-printable or base64); 10% of plain texts are format=flowed;
// replies quote their parent. Attachments are base64 of pseudo-random
// octets behind the magic number of their type (PDF, JPEG, PNG, ZIP,
// Office, GIF), or CSV and log text; 35% have non-ASCII names, sent RFC
// 2231 encoded (with continuations when long) or RFC 2047 encoded in a
// quoted string, as mailers do.
//
// Sizes are heavily skewed to small: the median is about 5 KB, the mean
// about 70 KB, 8% are over 100 KB. Texts are 200 B–2 KB (60%), 2–8 KB
// (30%), 8–30 KB (8%) or 30–120 KB (2%). Attachments are 2–30 KB (55%),
// 30–100 KB (30%), 100 KB–1.5 MB (13%) or 1.5–3.6 MB (2%); 0.6% of
// messages with attachments (0.1% of all) carry one of 3.6–14.5 MB, which
// makes a message of 5–20 MB. No message is larger than Options.MaxSize
// (DefaultMaxSize if unset): the largest texts and attachments of a
// message that would be are cut until it fits.
//
// # Broken messages
//
// 4% of messages are deliberately broken, each in the one way its kind
// names: a header line without a colon (a leading mbox "From " line or
// stray text), a header field without a value, raw 8-bit octets in
// Subject or From, a header line of 1000–4000 octets, headers only (no
// blank line, no body), a Date no RFC 5322 parser accepts, a multipart
// body without its closing boundary, a multipart whose boundary is not
// declared (or declared differently), a Content-Transfer-Encoding that
// does not match the content (base64 or quoted-printable over plain text,
// 7bit over 8-bit text), and base64 cut short. Apart from "headers only",
// even broken messages separate header and body with a blank line, and all
// lines end in CRLF. Options.NoBroken leaves them out.
package mailcorpus

import (
	"io"
	"math"
	"slices"
	"sync"
	"time"
)

const (
	// DefaultMaxSize is the largest message of a corpus without a cap.
	DefaultMaxSize = 20 << 20

	// MinMaxSize is the smallest cap honoured. What cannot be cut (headers
	// with 50 recipients and long References, MIME structure, two nested
	// messages) takes up to about 9 KB (the most in 100 000 messages).
	MinMaxSize = 32 << 10
)

// Options choose a corpus.
type Options struct {
	Seed int64

	// MaxSize caps every message, in octets: text and attachments of a
	// message that would be larger are cut to fit, so its kind and structure
	// stay. 0 means DefaultMaxSize; values below MinMaxSize are raised to it.
	MaxSize int64

	// NoBroken leaves out the broken kinds; the others keep their relative
	// weights.
	NoBroken bool
}

// Generator makes the messages of one corpus. It holds no state that
// changes, so it is safe for concurrent use.
type Generator struct {
	opts    Options
	maxSize int64
	start   time.Time

	// Independent streams, so that a message's ID, date, thread parent and
	// thread subject can be computed on their own (References name other
	// messages without generating them).
	kMsg, kThread, kID, kSubject, kDate uint64
}

// New returns the generator of the corpus for seed, without a size cap
// beyond DefaultMaxSize.
func New(seed int64) *Generator { return NewWithOptions(Options{Seed: seed}) }

// NewWithOptions returns the generator of the corpus chosen by o.
func NewWithOptions(o Options) *Generator {
	g := &Generator{opts: o, maxSize: o.MaxSize}
	if g.maxSize <= 0 || g.maxSize > DefaultMaxSize {
		g.maxSize = DefaultMaxSize
	}
	g.maxSize = max(g.maxSize, MinMaxSize)
	k := uint64(o.Seed)
	g.kMsg = mix(k, 1)
	g.kThread = mix(k, 2)
	g.kID = mix(k, 3)
	g.kSubject = mix(k, 4)
	g.kDate = mix(k, 5)
	day := int(mix(k, 6) % 365)
	g.start = time.Date(2016, 1, 1, 8, 0, 0, 0, time.UTC).AddDate(0, 0, day)
	return g
}

// Kind tells which kind message i is, without making it.
func (g *Generator) Kind(i int) Kind {
	r := g.msgRng(i)
	return g.drawKind(&r)
}

// Message returns message i.
func (g *Generator) Message(i int) []byte {
	c := getCtx()
	defer putCtx(c)
	// Counting first costs little (no attachment or text octets are made)
	// and gives the exact size, so the message is made in one allocation.
	limit, size, _ := g.plan(c, i)
	s := sink{buf: make([]byte, 0, size)}
	g.render(c, &s, i, limit)
	return s.buf
}

// WriteMessage writes message i to w without holding it in memory, and
// returns the number of octets written.
func (g *Generator) WriteMessage(w io.Writer, i int) (int64, error) {
	c := getCtx()
	defer putCtx(c)
	limit, _, _ := g.plan(c, i)
	s := sink{w: w, buf: make([]byte, 0, flushSize+8<<10)}
	g.render(c, &s, i, limit)
	s.flush()
	return s.written, s.err
}

// Size returns the length of message i. It counts the octets of texts and
// attachments without making them, so it is cheap even for the largest
// messages.
func (g *Generator) Size(i int) int64 {
	c := getCtx()
	defer putCtx(c)
	_, size, _ := g.plan(c, i)
	return size
}

// plan renders message i without keeping it and returns the filler limit
// that makes it fit the cap, its size and its number of recipients.
func (g *Generator) plan(c *msgCtx, i int) (limit int, size int64, rcpts int) {
	s := sink{dry: true}
	g.render(c, &s, i, noLimit)
	if s.n <= g.maxSize {
		return noLimit, s.n, s.rcpts
	}
	return g.fit(c, i, &s)
}

// fit finds the largest limit on each text and attachment (the fillers)
// with which message i fits the cap. s is the record of a render without
// a limit: the octets each filler took and what the rest took.
func (g *Generator) fit(c *msgCtx, i int, s *sink) (limit int, size int64, rcpts int) {
	var fill int64
	for _, f := range s.fillers {
		fill += f.enc
	}
	budget := g.maxSize - (s.n - fill)
	limit = waterLevel(s.fillers, budget-budget/32)
	// The level assumes a filler's encoded size is proportional to its raw
	// size; line ends and quoted-printable make that approximate, so check.
	for try := 0; ; try++ {
		d := sink{dry: true}
		g.render(c, &d, i, limit)
		if d.n <= g.maxSize || limit == 0 {
			return limit, d.n, d.rcpts
		}
		limit = limit / 8 * 7
		if try > 30 {
			limit = 0
		}
	}
}

// waterLevel returns the largest L such that cutting every filler to at
// most L raw octets makes them take no more than budget octets, assuming
// each keeps the ratio of encoded to raw size it had. The smallest fillers
// are kept whole; the largest are cut.
func waterLevel(fillers []filler, budget int64) int {
	if budget <= 0 {
		return 0
	}
	fs := slices.Clone(fillers)
	slices.SortFunc(fs, func(a, b filler) int { return a.n - b.n })
	var rho float64 // encoded octets per raw octet of the fillers not yet kept whole
	for _, f := range fs {
		if f.n > 0 {
			rho += float64(f.enc) / float64(f.n)
		}
	}
	b := float64(budget)
	for _, f := range fs {
		if f.n == 0 {
			continue
		}
		if level := b / rho; level < float64(f.n) {
			return int(level)
		}
		b -= float64(f.enc)
		rho -= float64(f.enc) / float64(f.n)
	}
	return noLimit
}

func (g *Generator) msgRng(i int) rng { return rng{mix(g.kMsg, uint64(i))} }

// kindWeights are per mille; the well-formed kinds come first so that
// NoBroken draws from them alone.
var kindWeights = [numKinds]int{
	KindPlain:                    450,
	KindHTML:                     50,
	KindAlternative:              250,
	KindAttachments:              170,
	KindForwarded:                40,
	KindBrokenNoColon:            4,
	KindBrokenEmptyHeader:        4,
	KindBroken8BitHeader:         4,
	KindBrokenLongHeader:         4,
	KindBrokenHeaderOnly:         4,
	KindBrokenDate:               4,
	KindBrokenNoClosingBoundary:  4,
	KindBrokenUndeclaredBoundary: 4,
	KindBrokenWrongEncoding:      4,
	KindBrokenTruncatedBase64:    4,
}

func (g *Generator) drawKind(r *rng) Kind {
	total := 1000
	if g.opts.NoBroken {
		total = 960
	}
	u := r.intn(total)
	for k, w := range kindWeights {
		if u < w {
			return Kind(k)
		}
		u -= w
	}
	return KindPlain
}

// Kind is the shape of a message.
type Kind uint8

const (
	KindPlain       Kind = iota // text/plain only
	KindHTML                    // text/html only
	KindAlternative             // multipart/alternative: text and HTML
	KindAttachments             // multipart/mixed with attachments
	KindForwarded               // multipart/mixed with a nested message/rfc822

	KindBrokenNoColon            // a header line without a colon
	KindBrokenEmptyHeader        // a header field without a value
	KindBroken8BitHeader         // raw 8-bit bytes in Subject or From
	KindBrokenLongHeader         // a header line longer than 998 octets
	KindBrokenHeaderOnly         // headers only: no blank line, no body
	KindBrokenDate               // a Date no RFC 5322 parser accepts
	KindBrokenNoClosingBoundary  // the outer multipart is never closed
	KindBrokenUndeclaredBoundary // multipart without a boundary parameter, or with another one than used
	KindBrokenWrongEncoding      // a text part whose Content-Transfer-Encoding does not match it
	KindBrokenTruncatedBase64    // an attachment whose base64 is cut short

	numKinds
)

var kindNames = [numKinds]string{
	"plain", "html", "alternative", "attachments", "forwarded",
	"broken-no-colon", "broken-empty-header", "broken-8bit-header", "broken-long-header",
	"broken-header-only", "broken-date", "broken-no-closing-boundary",
	"broken-undeclared-boundary", "broken-wrong-encoding", "broken-truncated-base64",
}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Broken reports whether messages of this kind are deliberately malformed.
func (k Kind) Broken() bool { return k >= KindBrokenNoColon && k < numKinds }

// Kinds lists every kind, well-formed ones first.
func Kinds() []Kind {
	ks := make([]Kind, numKinds)
	for k := range ks {
		ks[k] = Kind(k)
	}
	return ks
}

// noLimit is the filler limit of a message that needs no cutting.
const noLimit = math.MaxInt

// flushSize is how much a streaming write collects before writing.
const flushSize = 64 << 10

// filler is a text or attachment as rendered: n raw octets asked for (the
// natural size, before any limit), enc octets it took in the message.
type filler struct {
	n   int
	enc int64
}

// sink is where a message goes: kept in buf, streamed to w, or only
// counted (dry), which is how Size and fit learn sizes without making text
// or attachment octets.
type sink struct {
	w       io.Writer // nil: the message stays in buf
	buf     []byte
	n       int64 // octets of the message so far, kept or counted
	written int64 // octets written to w
	dry     bool
	err     error
	fillers []filler
	rcpts   int
}

func (s *sink) write(p []byte) {
	s.n += int64(len(p))
	if !s.dry {
		s.buf = append(s.buf, p...)
		s.flushFull()
	}
}

func (s *sink) str(p string) {
	s.n += int64(len(p))
	if !s.dry {
		s.buf = append(s.buf, p...)
		s.flushFull()
	}
}

// text writes what tb put together, or counts it.
func (s *sink) text(tb *textBuilder) {
	if s.dry {
		s.n += int64(tb.size)
		return
	}
	s.write(tb.dst)
}

// grow adds n octets to the message and returns them for the caller to
// fill; the sink must not be dry. The caller calls flushFull when done.
func (s *sink) grow(n int) []byte {
	s.n += int64(n)
	s.buf = slices.Grow(s.buf, n)
	s.buf = s.buf[:len(s.buf)+n]
	return s.buf[len(s.buf)-n:]
}

// flushFull writes out what a streaming sink has collected once it is
// enough for one write.
func (s *sink) flushFull() {
	if s.w != nil && len(s.buf) >= flushSize {
		s.flush()
	}
}

func (s *sink) flush() {
	if s.w == nil || s.dry || len(s.buf) == 0 {
		return
	}
	n, err := s.w.Write(s.buf)
	s.written += int64(n)
	s.buf = s.buf[:0]
	if err != nil {
		// Nothing more can reach w; finish counting only.
		s.err, s.dry = err, true
	}
}

var ctxPool = sync.Pool{New: func() any { return new(msgCtx) }}

// getCtx returns a context whose scratch buffers earlier messages grew.
func getCtx() *msgCtx { return ctxPool.Get().(*msgCtx) }

func putCtx(c *msgCtx) {
	if cap(c.tb.dst) > 1<<20 {
		c.tb.dst = nil // do not pin the text of a rare huge message
	}
	c.g, c.s = nil, nil
	ctxPool.Put(c)
}
