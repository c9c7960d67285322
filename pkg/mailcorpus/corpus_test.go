package mailcorpus

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// The same seed and index give the same bytes, in any order; another seed
// gives another corpus.
func TestDeterministic(t *testing.T) {
	a, b := New(42), New(42)
	idx := []int{0, 1, 2, 3, 99_999, 12_345, 500, 7}
	for i := range 300 {
		idx = append(idx, i)
	}
	first := map[int][]byte{}
	for _, i := range idx {
		first[i] = a.Message(i)
	}
	for k := len(idx) - 1; k >= 0; k-- {
		i := idx[k]
		if got := b.Message(i); !bytes.Equal(got, first[i]) {
			t.Fatalf("message %d differs between two generators with the same seed", i)
		}
		if got := a.Message(i); !bytes.Equal(got, first[i]) {
			t.Fatalf("message %d differs when made again", i)
		}
	}

	other := New(43)
	same := 0
	for i := range 300 {
		if bytes.Equal(other.Message(i), first[i]) {
			same++
		}
	}
	if same > 0 {
		t.Errorf("%d of 300 messages equal under another seed", same)
	}

	// A cap changes only the messages that exceed it.
	capped := NewWithOptions(Options{Seed: 42, MaxSize: 256 << 10})
	for i := range 300 {
		if len(first[i]) <= 256<<10 && !bytes.Equal(capped.Message(i), first[i]) {
			t.Fatalf("message %d (%d octets) changed under a 256 KiB cap", i, len(first[i]))
		}
	}
}

// The first 2000 messages: every line ends in CRLF and the header in a
// blank line; the well-formed ones parse as mail and MIME down to their
// last part; the broken ones are broken the way their kind says.
func TestMessagesParse(t *testing.T) {
	g := New(1)
	c := getCtx()
	defer putCtx(c)
	for i := range 2000 {
		msg := g.Message(i)
		kind := g.Kind(i)
		if err := checkLines(msg); err != nil {
			t.Fatalf("message %d (%s): %v", i, kind, err)
		}
		if kind != KindBrokenHeaderOnly && !bytes.Contains(msg, []byte("\r\n\r\n")) {
			t.Fatalf("message %d (%s): no blank line after the header", i, kind)
		}
		if kind.Broken() {
			if err := checkBroken(kind, msg); err != nil {
				t.Fatalf("message %d (%s): %v\n%s", i, kind, err, head(msg))
			}
			continue
		}
		_, _, rcpts := g.plan(c, i)
		if err := checkMessage(g, i, msg, rcpts); err != nil {
			t.Fatalf("message %d (%s): %v\n%s", i, kind, err, head(msg))
		}
	}
}

// Over 5000 messages the distribution the package documents holds.
func TestDistribution(t *testing.T) {
	const n = 5000
	g := NewWithOptions(Options{Seed: 7, MaxSize: 256 << 10})
	full := New(7)
	st := full.Stats(n)
	t.Log(st)

	for k, w := range kindWeights {
		want := float64(n) * float64(w) / 1000
		got := float64(st.ByKind[Kind(k)])
		if got < want*0.6-3 || got > want*1.4+3 {
			t.Errorf("%d %s messages, want about %.0f", int(got), Kind(k), want)
		}
		if got == 0 {
			t.Errorf("no %s message in %d", Kind(k), n)
		}
	}
	if st.MaxRecipients != 50 || st.MeanRecipients < 3 || st.MeanRecipients > 5 {
		t.Errorf("recipients: mean %.1f, max %d; want mean 3–5 and max 50", st.MeanRecipients, st.MaxRecipients)
	}
	if st.MedianSize < 3<<10 || st.MedianSize > 10<<10 {
		t.Errorf("median size %d, want 3–10 KiB", st.MedianSize)
	}
	if st.MaxSize > DefaultMaxSize || st.MaxSize < 5<<20 {
		t.Errorf("largest message %d octets, want 5–20 MiB in %d", st.MaxSize, n)
	}

	var encodedSubject, foldedSubject, rfc2231, rfc822, attachments, oneRcpt, replies, big int
	c := getCtx()
	defer putCtx(c)
	for i := range n {
		if _, _, rc := g.plan(c, i); rc == 1 {
			oneRcpt++
		}
		if full.Size(i) > 100<<10 {
			big++
		}
		msg := g.Message(i)
		hdr, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
		if encodedSubjectRE.Match(hdr) {
			encodedSubject++
		}
		if foldedSubjectRE.Match(hdr) {
			foldedSubject++
		}
		if bytes.Contains(hdr, []byte("\r\nIn-Reply-To: ")) {
			replies++
		}
		if bytes.Contains(msg, []byte("filename*")) {
			rfc2231++
		}
		if bytes.Contains(msg, []byte("Content-Type: message/rfc822")) {
			rfc822++
		}
		if bytes.Contains(msg, []byte("Content-Disposition: attachment")) {
			attachments++
		}
	}
	for _, c := range []struct {
		what     string
		got      int
		min, max float64 // fractions of n
	}{
		{"one recipient", oneRcpt, 0.50, 0.60},
		{"encoded-word subjects", encodedSubject, 0.08, 0.30},
		{"folded subjects", foldedSubject, 0.05, 0.30},
		{"replies", replies, 0.30, 0.40},
		{"RFC 2231 file names", rfc2231, 0.02, 0.15},
		{"message/rfc822 parts", rfc822, 0.03, 0.08},
		{"attachments", attachments, 0.15, 0.30},
		{"messages over 100 KiB", big, 0.02, 0.10},
	} {
		t.Logf("%s: %.1f%%", c.what, float64(c.got)*100/n)
		if f := float64(c.got) / n; f < c.min || f > c.max {
			t.Errorf("%s: %d of %d, want %.0f–%.0f%%", c.what, c.got, n, c.min*100, c.max*100)
		}
	}
}

// No message exceeds the cap, Size tells the length Message makes, and a
// message cut to fit keeps its kind and still parses.
func TestSizeCap(t *testing.T) {
	full := New(3)
	for _, limit := range []int64{256 << 10, MinMaxSize} {
		g := NewWithOptions(Options{Seed: 3, MaxSize: limit})
		c := getCtx()
		cut := 0
		for i := range 5000 {
			size := g.Size(i)
			if size > limit {
				t.Fatalf("cap %d: message %d has %d octets", limit, i, size)
			}
			if full.Size(i) <= limit && i%10 != 0 {
				continue
			}
			msg := g.Message(i)
			if int64(len(msg)) != size {
				t.Fatalf("cap %d: message %d has %d octets, Size says %d", limit, i, len(msg), size)
			}
			if full.Size(i) <= limit {
				continue
			}
			cut++
			kind := g.Kind(i)
			if kind.Broken() {
				continue
			}
			_, _, rcpts := g.plan(c, i)
			if err := checkMessage(g, i, msg, rcpts); err != nil {
				t.Fatalf("cap %d: message %d (%s) cut to %d octets: %v", limit, i, kind, len(msg), err)
			}
		}
		putCtx(c)
		if cut == 0 {
			t.Errorf("cap %d: no message had to be cut", limit)
		}
	}

	g := New(3)
	for i := range 300 {
		if got, want := int64(len(g.Message(i))), g.Size(i); got != want {
			t.Fatalf("message %d has %d octets, Size says %d", i, got, want)
		}
	}
}

// WriteMessage streams the same bytes Message returns, also for the largest
// messages, and reports a failing writer.
func TestWriteMessage(t *testing.T) {
	g := New(5)
	largest, size := 0, int64(0)
	for i := range 5000 {
		if s := g.Size(i); s > size {
			largest, size = i, s
		}
	}
	if size < 5<<20 {
		t.Fatalf("largest of 5000 messages is only %d octets", size)
	}
	for _, i := range []int{0, 1, 2, 3, largest} {
		var buf bytes.Buffer
		n, err := g.WriteMessage(&buf, i)
		if err != nil || n != int64(buf.Len()) {
			t.Fatalf("message %d: wrote %d octets, buffer has %d, error %v", i, n, buf.Len(), err)
		}
		if !bytes.Equal(buf.Bytes(), g.Message(i)) {
			t.Fatalf("message %d: streamed bytes differ from Message", i)
		}
	}

	w := &failingWriter{room: 100 << 10}
	n, err := g.WriteMessage(w, largest)
	if !errors.Is(err, errFull) || n == 0 || n > 100<<10 {
		t.Fatalf("writing to a full writer: %d octets written, error %v", n, err)
	}
}

var errFull = errors.New("full")

type failingWriter struct{ room int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.room {
		return 0, errFull
	}
	w.room -= len(p)
	return len(p), nil
}

// Many goroutines share one generator.
func TestConcurrent(t *testing.T) {
	g := NewWithOptions(Options{Seed: 9, MaxSize: 256 << 10})
	want := make([][]byte, 200)
	for i := range want {
		want[i] = g.Message(i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for k := range want {
				i := (k + w*50) % len(want)
				if !bytes.Equal(g.Message(i), want[i]) {
					errs <- fmt.Errorf("message %d differs when made concurrently", i)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestNoBroken(t *testing.T) {
	g := NewWithOptions(Options{Seed: 1, NoBroken: true})
	for i := range 5000 {
		if k := g.Kind(i); k.Broken() {
			t.Fatalf("message %d is %s with NoBroken", i, k)
		}
	}
}

var (
	encodedSubjectRE = regexp.MustCompile(`(?m)^Subject: (.*\r\n )*.*=\?(UTF-8|ISO-8859-1)\?[BQ]\?`)
	foldedSubjectRE  = regexp.MustCompile(`(?m)^Subject: .*\r\n `)
	msgIDRE          = regexp.MustCompile(`^<[^<>@ ]+@[^<>@ ]+>$`)
	fieldNameRE      = regexp.MustCompile(`^[!-9;-~]+:`)        // RFC 5322 2.2
	emptyFieldRE     = regexp.MustCompile(`^[!-9;-~]+:[ \t]*$`) // a field without a value
)

// checkLines: CRLF only, no bare CR or LF.
func checkLines(msg []byte) error {
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		return errors.New("does not end in CRLF")
	}
	for k, b := range msg {
		if b == '\n' && (k == 0 || msg[k-1] != '\r') {
			return fmt.Errorf("bare LF at %d", k)
		}
		if b == '\r' && (k+1 == len(msg) || msg[k+1] != '\n') {
			return fmt.Errorf("bare CR at %d", k)
		}
	}
	return nil
}

// checkMessage checks a well-formed message: RFC 5322 line length, header
// fields that parse, a thread that names real messages, and a MIME
// structure that parses and decodes.
func checkMessage(g *Generator, i int, msg []byte, rcpts int) error {
	for line := range bytes.SplitSeq(msg, []byte("\r\n")) {
		if len(line) > 998 {
			return fmt.Errorf("line of %d octets", len(line))
		}
	}
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return err
	}
	if err := checkHeader(m.Header); err != nil {
		return err
	}
	var n int
	for _, f := range []string{"To", "Cc"} {
		if m.Header.Get(f) != "" {
			l, _ := m.Header.AddressList(f)
			n += len(l)
		}
	}
	if n != rcpts {
		return fmt.Errorf("%d recipients in To and Cc, want %d", n, rcpts)
	}
	if p := g.parent(i); p >= 0 {
		if got, want := m.Header.Get("In-Reply-To"), string(g.messageID(nil, p)); got != want {
			return fmt.Errorf("In-Reply-To %s, want the Message-ID of message %d, %s", got, p, want)
		}
	} else if m.Header.Get("In-Reply-To") != "" {
		return errors.New("In-Reply-To without a parent")
	}
	body, _ := io.ReadAll(m.Body)
	return walk(textproto.MIMEHeader(m.Header), body, 0)
}

func checkHeader(h mail.Header) error {
	if _, err := h.Date(); err != nil {
		return fmt.Errorf("Date %q: %v", h.Get("Date"), err)
	}
	if l, err := h.AddressList("From"); err != nil || len(l) != 1 {
		return fmt.Errorf("From %q: %v", h.Get("From"), err)
	}
	for _, f := range []string{"To", "Cc", "Reply-To"} {
		if v := h.Get(f); v != "" {
			if _, err := h.AddressList(f); err != nil {
				return fmt.Errorf("%s %q: %v", f, v, err)
			}
		}
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil || subject == "" || strings.Contains(subject, "=?") {
		return fmt.Errorf("Subject %q decodes to %q: %v", h.Get("Subject"), subject, err)
	}
	if !msgIDRE.MatchString(h.Get("Message-ID")) {
		return fmt.Errorf("Message-ID %q", h.Get("Message-ID"))
	}
	return nil
}

// walk checks one MIME entity and everything inside it.
func walk(h textproto.MIMEHeader, body []byte, depth int) error {
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	typ, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("Content-Type %q: %v", ct, err)
	}
	if cd := h.Get("Content-Disposition"); cd != "" {
		d, dp, err := mime.ParseMediaType(cd)
		if err != nil {
			return fmt.Errorf("Content-Disposition %q: %v", cd, err)
		}
		if d == "attachment" && typ != "message/rfc822" && dp["filename"] == "" {
			return fmt.Errorf("attachment without a file name: %q", cd)
		}
	}
	switch {
	case strings.HasPrefix(typ, "multipart/"):
		if params["boundary"] == "" {
			return errors.New("multipart without a boundary")
		}
		r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		parts := 0
		for {
			p, err := r.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("%s part %d: %v", typ, parts, err)
			}
			data, err := io.ReadAll(p)
			if err != nil {
				return fmt.Errorf("%s part %d: %v", typ, parts, err)
			}
			if err := walk(p.Header, data, depth); err != nil {
				return err
			}
			parts++
		}
		if parts == 0 {
			return fmt.Errorf("%s without parts", typ)
		}
		return nil
	case typ == "message/rfc822":
		m, err := mail.ReadMessage(bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("nested message: %v", err)
		}
		if err := checkHeader(m.Header); err != nil {
			return fmt.Errorf("nested message: %v", err)
		}
		inner, _ := io.ReadAll(m.Body)
		return walk(textproto.MIMEHeader(m.Header), inner, depth+1)
	}
	if strings.HasPrefix(typ, "text/") && h.Get("Content-Type") != "" && params["charset"] == "" {
		return fmt.Errorf("%s without a charset", typ)
	}
	switch cte := strings.ToLower(h.Get("Content-Transfer-Encoding")); cte {
	case "base64":
		if _, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, bytes.NewReader(body))); err != nil {
			return fmt.Errorf("%s base64: %v", typ, err)
		}
	case "quoted-printable":
		if k := badQP(body); k >= 0 {
			return fmt.Errorf("%s: invalid quoted-printable at %d", typ, k)
		}
	case "", "7bit":
		if k := bytes.IndexFunc(body, func(r rune) bool { return r >= 0x80 }); k >= 0 {
			return fmt.Errorf("%s: 8-bit data in a 7bit part at %d", typ, k)
		}
	case "8bit":
	default:
		return fmt.Errorf("Content-Transfer-Encoding %q", cte)
	}
	return nil
}

// badQP returns where b breaks RFC 2045 6.7 (an '=' not starting an escape
// or a soft line break), or -1. Go's reader is lenient about this.
func badQP(b []byte) int {
	hex := func(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }
	for k := 0; k < len(b); k++ {
		if b[k] != '=' {
			continue
		}
		switch {
		case k+2 < len(b) && b[k+1] == '\r' && b[k+2] == '\n':
		case k+2 < len(b) && hex(b[k+1]) && hex(b[k+2]):
		default:
			return k
		}
	}
	return -1
}

// checkBroken checks that a broken message is broken as its kind says.
func checkBroken(kind Kind, msg []byte) error {
	hdr, body, found := bytes.Cut(msg, []byte("\r\n\r\n"))
	lines := bytes.Split(hdr, []byte("\r\n"))
	walkErr := func() error {
		m, err := mail.ReadMessage(bytes.NewReader(msg))
		if err != nil {
			return err
		}
		return walk(textproto.MIMEHeader(m.Header), body, 0)
	}
	switch kind {
	case KindBrokenNoColon:
		// Not a continuation, and no field name before a colon (RFC 5322
		// 2.2). net/mail takes a leading mbox "From " line (RFC 4155).
		for _, l := range lines {
			if len(l) > 0 && l[0] != ' ' && l[0] != '\t' && !fieldNameRE.Match(l) {
				return nil
			}
		}
		return errors.New("every header line has a field name and colon")
	case KindBrokenEmptyHeader:
		for _, l := range lines {
			if emptyFieldRE.Match(l) {
				return nil
			}
		}
		return errors.New("no header field without a value")
	case KindBroken8BitHeader:
		if bytes.IndexFunc(hdr, func(r rune) bool { return r >= 0x80 }) < 0 {
			return errors.New("no 8-bit octet in the header")
		}
	case KindBrokenLongHeader:
		for _, l := range lines {
			if len(l) > 998 {
				return nil
			}
		}
		return errors.New("no header line over 998 octets")
	case KindBrokenHeaderOnly:
		if found {
			return errors.New("has a blank line")
		}
	case KindBrokenDate:
		m, err := mail.ReadMessage(bytes.NewReader(msg))
		if err != nil {
			return err
		}
		if _, err := m.Header.Date(); err == nil {
			return fmt.Errorf("Date %q parses", m.Header.Get("Date"))
		}
	default: // the faults in the body
		if err := walkErr(); err == nil {
			return errors.New("MIME structure parses and decodes")
		}
	}
	return nil
}

func head(msg []byte) []byte {
	if len(msg) > 3000 {
		return msg[:3000]
	}
	return msg
}

// BenchmarkMessage reports how fast the corpus is made: capped at 256 KiB
// as tests use it, and with the full range of sizes, in memory and
// streamed.
func BenchmarkMessage(b *testing.B) {
	// Rates per CPU-second as well as per second: on a shared machine the
	// wall clock says more about the neighbours than about the generator.
	run := func(b *testing.B, g *Generator, make func(i int) int) {
		var total int64
		i := 0
		cpu := cpuTime()
		for b.Loop() {
			total += int64(make(i))
			i++
		}
		cpu = cpuTime() - cpu
		secs := b.Elapsed().Seconds()
		b.ReportMetric(float64(total)/float64(i), "B/msg")
		b.ReportMetric(float64(i)/secs, "msgs/s")
		b.ReportMetric(float64(total)/secs/1e6, "MB/s")
		if cpu > 0 {
			b.ReportMetric(float64(i)/cpu.Seconds(), "msgs/cpu-s")
			b.ReportMetric(float64(total)/cpu.Seconds()/1e6, "MB/cpu-s")
		}
	}
	capped := NewWithOptions(Options{Seed: 1, MaxSize: 256 << 10})
	full := New(1)
	// The small messages: text and HTML without attachments (75%).
	var small []int
	for i := 0; len(small) < 100_000; i++ {
		if k := full.Kind(i); k == KindPlain || k == KindHTML || k == KindAlternative {
			small = append(small, i)
		}
	}
	b.Run("small", func(b *testing.B) {
		run(b, full, func(i int) int { return len(full.Message(small[i%len(small)])) })
	})
	b.Run("capped-256KiB", func(b *testing.B) {
		run(b, capped, func(i int) int { return len(capped.Message(i)) })
	})
	b.Run("full", func(b *testing.B) {
		run(b, full, func(i int) int { return len(full.Message(i)) })
	})
	b.Run("full-streamed", func(b *testing.B) {
		run(b, full, func(i int) int {
			n, _ := full.WriteMessage(io.Discard, i)
			return int(n)
		})
	})
	b.Run("size", func(b *testing.B) {
		run(b, full, func(i int) int { return int(full.Size(i)) })
	})
}
