package stress

import (
	"bufio"
	"compress/flate"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// errResync says a view can no longer be placed (a VANISHED for a UID the
// client never learned while some are unknown): the client selects again.
var errResync = errors.New("view needs a resync")

// errHung is a command without its answer within the command timeout.
var errHung = errors.New("hung")

// session is one client connection.
type session struct {
	run    *runner
	client int
	user   User
	addr   string

	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	zw   *flate.Writer // COMPRESS=DEFLATE is on (RFC 4978)
	zbuf *bufio.Writer // under zw
	tagN int

	caps      map[string]bool
	condstore bool // SELECT ... (CONDSTORE) used: MODSEQ in every FETCH
	qresync   bool // QRESYNC enabled: VANISHED instead of EXPUNGE

	v *view
	// keyword is this client's own keyword: only it sets or clears it, so
	// the client knows its state on every message it touched and checks
	// every FLAGS the server sends against that.
	keyword string
	ownKw   map[string]map[uint32]kwState // mailbox -> UID -> state

	// transcript keeps the last lines exchanged, for reports.
	transcript []string
	cur        *command
}

type kwState struct {
	set     bool
	pending bool // a STORE of it is in flight: either answer is right
}

// command is one command in flight and what its untagged responses told.
type command struct {
	name    string // e.g. "UID FETCH"
	seqOnly bool   // FETCH, STORE or SEARCH by sequence number: no EXPUNGE may come (RFC 9051 7.5.1)

	fetched  map[int]fetchData // by sequence number
	search   []uint32
	searched bool
	copyUID  string // COPYUID data from an untagged OK (MOVE)
	idling   bool
}

// fetchData is what one FETCH response said.
type fetchData struct {
	uid      uint32
	flags    []string
	hasFlags bool
	modseq   uint64
	size     int64
	hasSize  bool
	body     string
	hasBody  bool
	header   string
}

// reply is a tagged response.
type reply struct {
	status, code, text string
}

func (r reply) String() string {
	if r.code != "" {
		return r.status + " [" + r.code + "] " + r.text
	}
	return r.status + " " + r.text
}

func (s *session) note(dir, line string) {
	if len(line) > 300 {
		line = line[:300] + "..."
	}
	s.transcript = append(s.transcript, dir+line)
	if len(s.transcript) > 40 {
		s.transcript = s.transcript[len(s.transcript)-40:]
	}
}

func (s *session) fail(kind, format string, args ...any) {
	s.run.record(kind, s, fmt.Sprintf(format, args...))
}

// dial connects and reads the greeting.
func (s *session) dial() error {
	d := &net.Dialer{Timeout: s.run.cfg.CommandTimeout}
	conn, err := tls.DialWithDialer(d, "tcp", s.addr, s.run.cfg.TLS)
	if err != nil {
		return err
	}
	s.conn = conn
	s.r = bufio.NewReaderSize(conn, 16<<10)
	s.w = bufio.NewWriter(conn)
	s.v = nil
	s.qresync, s.condstore = false, false
	s.zw = nil
	conn.SetReadDeadline(time.Now().Add(s.run.cfg.CommandTimeout))
	l, err := readResponse(s.r)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	s.note("S: ", string(l))
	if !strings.HasPrefix(string(l), "* OK") {
		return fmt.Errorf("greeting %q", l)
	}
	return nil
}

// flush sends what is buffered; under COMPRESS the deflater is flushed
// too (RFC 4978 section 4: after every command).
func (s *session) flush() error {
	if err := s.w.Flush(); err != nil {
		return err
	}
	if s.zw != nil {
		if err := s.zw.Flush(); err != nil {
			return err
		}
		// One write per command: compress/flate writes a flush in pieces,
		// and a server may act on (and close after) LOGOUT before the last.
		return s.zbuf.Flush()
	}
	return nil
}

// compress turns COMPRESS=DEFLATE on (RFC 4978): both directions deflated
// from the byte after the tagged OK.
func (s *session) compress() error {
	rep, _, err := s.exec("COMPRESS", "DEFLATE", nil)
	if err != nil {
		return err
	}
	if rep.status != "OK" {
		s.fail(KindInconsistent, "COMPRESS DEFLATE: %s", rep)
		return nil
	}
	if s.r.Buffered() > 0 {
		s.fail(KindInconsistent, "data after COMPRESS's OK before the client's first compressed command")
	}
	s.zbuf = bufio.NewWriter(s.conn)
	zw, err := flate.NewWriter(s.zbuf, flate.BestSpeed)
	if err != nil {
		return err
	}
	s.zw = zw
	s.r = bufio.NewReaderSize(flate.NewReader(s.conn), 16<<10)
	s.w = bufio.NewWriter(zw)
	return nil
}

func (s *session) close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// exec sends one command and reads until its tagged response, applying
// every untagged response on the way. literal, if set, is sent as a
// non-synchronizing literal (RFC 7888) right after the command line, which
// must end with "{n+}".
func (s *session) exec(name, args string, literal []byte) (reply, *command, error) {
	s.tagN++
	tag := "s" + strconv.Itoa(s.tagN)
	cmd := &command{name: name, fetched: map[int]fetchData{}}
	cmd.seqOnly = name == "FETCH" || name == "STORE" || name == "SEARCH"
	s.cur = cmd
	defer func() { s.cur = nil }()

	line := tag + " " + name
	if args != "" {
		line += " " + args
	}
	s.note("C: ", line)
	start := time.Now()
	s.conn.SetDeadline(start.Add(s.run.cfg.CommandTimeout))
	s.w.WriteString(line)
	s.w.WriteString("\r\n")
	if literal != nil {
		s.w.Write(literal)
		s.w.WriteString("\r\n")
	}
	if err := s.flush(); err != nil {
		return reply{}, cmd, s.ioError(err)
	}
	var resync error // the view is lost; the command still runs to its end
	for {
		l, err := readResponse(s.r)
		if err != nil {
			return reply{}, cmd, s.ioError(err)
		}
		s.note("S: ", string(l))
		if strings.HasPrefix(string(l), tag+" ") {
			rep := parseStatus(string(l[len(tag)+1:]))
			s.run.stats.add(name, time.Since(start))
			if rep.status == "BAD" || strings.HasPrefix(rep.code, "SERVERBUG") {
				s.fail(KindServerBug, "%s %s answered %s", name, abbreviate(args), rep)
			}
			return rep, cmd, resync
		}
		if err := s.untagged(l); err == errResync {
			resync = err
		} else if err != nil {
			return reply{}, cmd, err
		}
	}
}

func abbreviate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// ioError classifies a read or write failure: past the deadline the
// session hung; otherwise the server dropped it.
func (s *session) ioError(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errHung
	}
	return fmt.Errorf("connection: %w", err)
}

func parseStatus(l string) reply {
	status, rest, _ := strings.Cut(l, " ")
	r := reply{status: strings.ToUpper(status), text: rest}
	if strings.HasPrefix(rest, "[") {
		if end := strings.IndexByte(rest, ']'); end > 0 {
			r.code = rest[1:end]
			r.text = strings.TrimSpace(rest[end+1:])
		}
	}
	return r
}

// untagged checks and applies one untagged response.
func (s *session) untagged(l []byte) error {
	line := string(l)
	if strings.HasPrefix(line, "+") {
		if s.cur != nil && s.cur.name == "IDLE" {
			s.cur.idling = true
			return nil
		}
		s.fail(KindInconsistent, "continuation request %q outside IDLE (every literal is LITERAL+)", line)
		return nil
	}
	if !strings.HasPrefix(line, "* ") {
		s.fail(KindInconsistent, "response %q is neither tagged, untagged nor a continuation", line)
		return nil
	}
	rest := line[2:]
	first, after, _ := strings.Cut(rest, " ")
	if n, err := strconv.Atoi(first); err == nil {
		kind, data, _ := strings.Cut(after, " ")
		return s.numbered(n, strings.ToUpper(kind), data)
	}
	switch strings.ToUpper(first) {
	case "OK", "NO":
		rep := parseStatus(rest)
		if strings.HasPrefix(rep.code, "COPYUID ") && s.cur != nil {
			s.cur.copyUID = rep.code
		}
		if strings.HasPrefix(rep.code, "HIGHESTMODSEQ ") && s.v != nil {
			ms, _ := strconv.ParseUint(strings.TrimPrefix(rep.code, "HIGHESTMODSEQ "), 10, 64)
			s.v.highestMS = ms
		}
		if strings.HasPrefix(rep.code, "UIDNEXT ") && s.v != nil {
			u, _ := strconv.ParseUint(strings.TrimPrefix(rep.code, "UIDNEXT "), 10, 32)
			s.v.uidNext = uint32(u)
		}
		if strings.HasPrefix(rep.code, "UIDVALIDITY ") && s.v != nil {
			u, _ := strconv.ParseUint(strings.TrimPrefix(rep.code, "UIDVALIDITY "), 10, 32)
			if err := s.run.state.uidValidity(s.user.Name, s.v.mailbox, uint32(u)); err != nil {
				s.fail(KindInconsistent, "%v", err)
			}
		}
		if strings.HasPrefix(rep.code, "SERVERBUG") {
			s.fail(KindServerBug, "untagged %s", rep)
		}
	case "CAPABILITY":
		if s.caps != nil {
			for _, c := range strings.Fields(after) {
				s.caps[strings.ToUpper(c)] = true
			}
		}
	case "BAD":
		s.fail(KindServerBug, "untagged BAD: %s", rest)
	case "BYE":
		if s.cur == nil || s.cur.name != "LOGOUT" {
			s.fail(KindServerBug, "server said BYE: %s", rest)
		}
	case "SEARCH":
		if s.cur == nil {
			break
		}
		s.cur.searched = true
		for _, f := range strings.Fields(after) {
			if f == "(MODSEQ" || strings.HasSuffix(f, ")") {
				break
			}
			n, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				s.fail(KindInconsistent, "SEARCH result %q", after)
				break
			}
			s.cur.search = append(s.cur.search, uint32(n))
		}
	case "VANISHED":
		if s.v == nil {
			s.fail(KindInconsistent, "VANISHED without a selected mailbox")
			break
		}
		if !s.qresync {
			s.fail(KindInconsistent, "VANISHED without QRESYNC enabled (RFC 7162 3.2.10)")
		}
		set := after
		earlier := strings.HasPrefix(strings.ToUpper(set), "(EARLIER) ")
		if earlier {
			set = set[len("(EARLIER) "):]
		}
		uids, err := parseUIDSet(set)
		if err != nil {
			s.fail(KindInconsistent, "VANISHED %v", err)
			break
		}
		if !earlier && s.cur != nil && s.cur.seqOnly {
			s.fail(KindInconsistent, "VANISHED during %s (RFC 7162 3.2.10: not while answering FETCH, STORE or SEARCH)", s.cur.name)
		}
		if s.v.lost {
			break
		}
		if err := s.v.vanished(uids); err != nil {
			if err == errResync {
				s.v.lost = true
				return err
			}
			s.fail(KindInconsistent, "%v", err)
		}
	}
	return nil
}

// numbered handles "* n EXISTS|EXPUNGE|RECENT|FETCH".
func (s *session) numbered(n int, kind, data string) error {
	if s.v != nil && s.v.lost {
		return nil // numbers no longer placeable until the next SELECT
	}
	if s.v == nil {
		if kind == "EXISTS" || kind == "EXPUNGE" || kind == "FETCH" {
			s.fail(KindInconsistent, "%d %s without a selected mailbox", n, kind)
		}
		return nil
	}
	switch kind {
	case "EXISTS":
		if err := s.v.exists(n); err != nil {
			s.fail(KindInconsistent, "%v", err)
		}
	case "EXPUNGE":
		if s.qresync {
			s.fail(KindInconsistent, "EXPUNGE with QRESYNC enabled (RFC 7162 3.2.10: VANISHED instead)")
		}
		if s.cur == nil {
			s.fail(KindInconsistent, "EXPUNGE %d with no command in progress (RFC 9051 7.5.1)", n)
		} else if s.cur.seqOnly {
			s.fail(KindInconsistent, "EXPUNGE %d while answering %s (RFC 9051 7.5.1: not during FETCH, STORE or SEARCH)", n, s.cur.name)
		}
		if err := s.v.expunge(n); err != nil {
			s.fail(KindInconsistent, "%v", err)
		}
	case "FETCH":
		toks, err := tokenize([]byte(data))
		if err != nil || len(toks) != 1 || toks[0].kind != tokList {
			s.fail(KindInconsistent, "FETCH data does not parse: %v: %.200s", err, data)
			return nil
		}
		fd := parseFetch(toks[0].list)
		if fd.uid != 0 {
			if err := s.v.learn(n, fd.uid); err != nil {
				s.fail(KindInconsistent, "%v", err)
				return nil
			}
		} else if n < 1 || n > s.v.count() {
			s.fail(KindInconsistent, "%s: FETCH for sequence number %d with %d messages", s.v.mailbox, n, s.v.count())
			return nil
		}
		uid := s.v.uids[n-1]
		// RFC 7162 3.1: once CONDSTORE is enabled, every FETCH that reports
		// flags (changed by a STORE, or by another session) carries MODSEQ.
		if s.condstore && fd.hasFlags && fd.modseq == 0 {
			s.fail(KindInconsistent, "%s: FETCH of UID %d without MODSEQ after CONDSTORE (RFC 7162 3.2.4)", s.v.mailbox, uid)
		}
		if fd.modseq != 0 && uid != 0 {
			if err := s.v.modseq(uid, fd.modseq); err != nil {
				s.fail(KindInconsistent, "%v", err)
			}
			if fd.hasFlags {
				if err := s.run.state.flagsAt(s.user.Name, s.v.mailbox, uid, fd.modseq, fd.flags); err != nil {
					s.fail(KindInconsistent, "%v", err)
				}
			}
		}
		if fd.hasFlags && uid != 0 {
			s.checkOwnKeyword(uid, fd.flags)
		}
		if s.cur != nil {
			// One message may get several FETCH responses in one command
			// (the answer and another session's flag update): merge them.
			s.cur.fetched[n] = mergeFetch(s.cur.fetched[n], fd)
		}
	}
	return nil
}

// checkOwnKeyword: only this client changes its keyword, so every FLAGS
// the server sends for a message it set or cleared it on must agree with
// its last acknowledged STORE (RFC 9051 7.5.2: FLAGS are the message's
// current flags).
func (s *session) checkOwnKeyword(uid uint32, flags []string) {
	st, ok := s.ownKw[s.v.mailbox][uid]
	if !ok || st.pending {
		return
	}
	if hasFlag(flags, s.keyword) != st.set {
		s.fail(KindInconsistent, "%s: FLAGS %v of UID %d: %s should be %s after this client's last acknowledged STORE", s.v.mailbox, flags, uid, s.keyword, map[bool]string{true: "set", false: "clear"}[st.set])
	}
}

func (s *session) setOwnKeyword(mailbox string, uid uint32, st kwState) {
	m := s.ownKw[mailbox]
	if m == nil {
		m = map[uint32]kwState{}
		s.ownKw[mailbox] = m
	}
	m[uid] = st
}

func mergeFetch(a, b fetchData) fetchData {
	if b.uid != 0 {
		a.uid = b.uid
	}
	if b.hasFlags {
		a.flags, a.hasFlags = b.flags, true
	}
	if b.modseq != 0 {
		a.modseq = b.modseq
	}
	if b.hasSize {
		a.size, a.hasSize = b.size, true
	}
	if b.hasBody {
		a.body, a.hasBody = b.body, true
	}
	if b.header != "" {
		a.header = b.header
	}
	return a
}

// parseFetch reads the items of one FETCH response.
func parseFetch(items []token) fetchData {
	var fd fetchData
	for i := 0; i+1 < len(items); i += 2 {
		name := strings.ToUpper(items[i].s)
		val := items[i+1]
		switch {
		case name == "UID":
			u, _ := strconv.ParseUint(val.s, 10, 32)
			fd.uid = uint32(u)
		case name == "FLAGS":
			fd.hasFlags = true
			for _, f := range val.list {
				fd.flags = append(fd.flags, f.s)
			}
		case name == "MODSEQ":
			if len(val.list) == 1 {
				fd.modseq, _ = strconv.ParseUint(val.list[0].s, 10, 64)
			}
		case name == "RFC822.SIZE":
			fd.size, _ = strconv.ParseInt(val.s, 10, 64)
			fd.hasSize = true
		case name == "BODY[]":
			fd.body, fd.hasBody = val.s, true
		case strings.HasPrefix(name, "BODY[HEADER.FIELDS"):
			fd.header = val.s
		}
	}
	return fd
}
