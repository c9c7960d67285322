package stress

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The mailboxes every user's clients work in. Archive is created first.
var mailboxes = []string{"INBOX", "Archive"}

// Mailbox sizes the clients steer towards: below low they append more,
// above high they expunge more.
const (
	lowWater  = 20
	highWater = 150
)

// login connects, authenticates and selects INBOX.
func (s *session) login() error {
	if err := s.dial(); err != nil {
		return err
	}
	start := time.Now()
	rep, _, err := s.exec("LOGIN", quote(s.user.Name)+" "+quote(s.user.Password), nil)
	if err != nil {
		return err
	}
	if rep.status != "OK" {
		return fmt.Errorf("LOGIN: %s", rep)
	}
	s.run.stats.add("login (connect+LOGIN)", time.Since(start))
	s.caps = map[string]bool{}
	if strings.HasPrefix(rep.code, "CAPABILITY ") {
		for _, c := range strings.Fields(rep.code)[1:] {
			s.caps[strings.ToUpper(c)] = true
		}
	} else {
		rep, _, err := s.exec("CAPABILITY", "", nil)
		if err != nil {
			return err
		}
		if rep.status != "OK" {
			return fmt.Errorf("CAPABILITY: %s", rep)
		}
	}
	if s.caps["COMPRESS=DEFLATE"] && s.run.rng(s).IntN(3) == 0 {
		if err := s.compress(); err != nil {
			return err
		}
	}
	if s.caps["QRESYNC"] && s.run.rng(s).IntN(2) == 0 {
		rep, _, err := s.exec("ENABLE", "QRESYNC", nil)
		if err != nil {
			return err
		}
		if rep.status != "OK" {
			s.fail(KindInconsistent, "ENABLE QRESYNC: %s", rep)
		} else {
			s.qresync = true
		}
	}
	return s.selectMailbox("INBOX", false)
}

func quote(s string) string { return strconv.Quote(s) }

// selectMailbox selects (or examines) a mailbox and learns every UID.
func (s *session) selectMailbox(name string, readOnly bool) error {
	maxBefore := s.run.state.maxUID(s.user.Name, name)
	verb := "SELECT"
	if readOnly {
		verb = "EXAMINE"
	}
	args := quote(name)
	condstore := s.caps["CONDSTORE"] && !s.qresync
	if condstore {
		args += " (CONDSTORE)"
	}
	s.v = newView(name, readOnly)
	rep, _, err := s.exec(verb, args, nil)
	if err != nil {
		return err
	}
	if rep.status != "OK" {
		s.v = nil
		s.fail(KindInconsistent, "%s %s: %s", verb, name, rep)
		return nil
	}
	s.condstore = condstore || s.qresync
	v := s.v
	v.selected = v.count()
	if v.uidNext == 0 {
		s.fail(KindInconsistent, "%s %s: no UIDNEXT (RFC 9051 7.1: required)", verb, name)
	} else if v.uidNext <= maxBefore {
		s.fail(KindInconsistent, "%s %s: UIDNEXT %d but UID %d was seen before the SELECT", verb, name, v.uidNext, maxBefore)
	}
	if s.condstore && v.highestMS == 0 {
		s.fail(KindInconsistent, "%s %s: HIGHESTMODSEQ missing or 0 with CONDSTORE (RFC 7162 3.1.2.1 and section 7: mod-sequence-value is positive)", verb, name)
	}
	if v.count() == 0 {
		return nil
	}
	return s.fetchFlags("1:*")
}

// fetchFlags fetches UID and FLAGS (and MODSEQ) of a sequence set; every
// message in it must be answered, or be expunged by the next NOOP.
func (s *session) fetchFlags(set string) error {
	items := "(UID FLAGS)"
	if s.condstore {
		items = "(UID FLAGS MODSEQ)"
	}
	want := s.seqRange(set)
	rep, cmd, err := s.exec("FETCH", set+" "+items, nil)
	if err != nil || rep.status != "OK" {
		if err == nil {
			s.fail(KindInconsistent, "FETCH %s: %s", set, rep)
		}
		return err
	}
	for _, n := range want {
		if _, ok := cmd.fetched[n]; ok || n > s.v.count() {
			continue
		}
		if u := s.v.uids[n-1]; u != 0 {
			s.v.mustGo[u] = "left out of FETCH " + set
		}
	}
	// A message announced during the FETCH is learned by the next step.
	return nil
}

// seqRange expands "a:b" or "1:*" against the view.
func (s *session) seqRange(set string) []int {
	lo, hi, _ := strings.Cut(set, ":")
	a, _ := strconv.Atoi(lo)
	b := s.v.count()
	if hi != "*" && hi != "" {
		b, _ = strconv.Atoi(hi)
	} else if hi == "" {
		b = a
	}
	var out []int
	for n := a; n <= b; n++ {
		out = append(out, n)
	}
	return out
}

// step runs one random operation.
func (s *session) step(rng *rand.Rand) error {
	if s.v == nil {
		return s.selectMailbox("INBOX", false)
	}
	if s.v.unknown() > 0 {
		// Learn the UIDs of arrivals first, as real clients do. A message
		// expunged before the client learned it is left out of the FETCH;
		// the next NOOP must then announce its EXPUNGE (RFC 9051 7.5.1
		// allows none during the FETCH).
		if s.v.learned != s.v.learnedBefore {
			// The last FETCH placed messages; new arrivals keep coming.
			s.v.unanswered, s.v.learnedBefore = 0, s.v.learned
		}
		s.v.unanswered++
		switch {
		case s.v.unanswered > 4:
			s.fail(KindInconsistent, "%s: %d messages announced by EXISTS were neither answered by two FETCHes nor expunged by the NOOPs after them", s.v.mailbox, s.v.unknown())
			s.v = nil
			return nil
		case s.v.unanswered%2 == 0:
			return s.opNoop(rng)
		}
		first := slices.Index(s.v.uids, 0) + 1
		return s.fetchFlags(fmt.Sprintf("%d:*", first))
	}
	s.v.unanswered = 0
	n := s.v.count()
	writable := !s.v.readOnly
	type op struct {
		weight int
		do     func(*rand.Rand) error
	}
	appendW, expungeW := 12, 8
	if n < lowWater {
		appendW, expungeW = 25, 1
	} else if n > highWater {
		appendW, expungeW = 2, 25
	}
	ops := []op{
		{20, s.opFetchFlags},
		{8, s.opFetchBody},
		{8, s.opFetchHeaders},
		{8, s.opSearch},
		{5, s.opNoop},
		{4, s.opIdle},
		{4, s.opSelect},
		{2, s.opLogout},
		{appendW, s.opAppend},
	}
	if writable {
		ops = append(ops, op{15, s.opStore}, op{expungeW, s.opExpunge}, op{5, s.opCopy}, op{5, s.opMove})
	}
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	pick := rng.IntN(total)
	for _, o := range ops {
		if pick < o.weight {
			return o.do(rng)
		}
		pick -= o.weight
	}
	return nil
}

// someUIDs picks up to k known UIDs of the view.
func (s *session) someUIDs(rng *rand.Rand, k int) []uint32 {
	known := s.v.knownUIDs()
	if len(known) == 0 {
		return nil
	}
	rng.Shuffle(len(known), func(i, j int) { known[i], known[j] = known[j], known[i] })
	out := known[:min(k, len(known))]
	slices.Sort(out)
	return out
}

func (s *session) opFetchFlags(rng *rand.Rand) error {
	n := s.v.count()
	if n == 0 {
		return s.opNoop(rng)
	}
	a := 1 + rng.IntN(n)
	b := a + rng.IntN(20)
	set := fmt.Sprintf("%d:%d", a, min(b, n))
	if rng.IntN(4) == 0 {
		set = "1:*"
	}
	return s.fetchFlags(set)
}

// opFetchBody fetches whole messages by UID and checks each body against
// the checksum it carries and against what every other client saw under
// that UID.
func (s *session) opFetchBody(rng *rand.Rand) error {
	uids := s.someUIDs(rng, 1+rng.IntN(3))
	if len(uids) == 0 {
		return s.opNoop(rng)
	}
	rep, cmd, err := s.exec("UID FETCH", formatSet(uids)+" (UID RFC822.SIZE BODY.PEEK[])", nil)
	if err != nil {
		return err
	}
	if rep.status != "OK" {
		s.fail(KindInconsistent, "UID FETCH body: %s", rep)
		return nil
	}
	got := map[uint32]bool{}
	for _, fd := range cmd.fetched {
		if !fd.hasBody {
			continue
		}
		got[fd.uid] = true
		if fd.hasSize && fd.size != int64(len(fd.body)) {
			s.fail(KindInconsistent, "%s UID %d: RFC822.SIZE %d but BODY[] has %d octets", s.v.mailbox, fd.uid, fd.size, len(fd.body))
		}
		id, err := checkBody(fd.body)
		if err != nil {
			s.fail(KindInconsistent, "%s UID %d: %v", s.v.mailbox, fd.uid, err)
			continue
		}
		if err := s.run.state.bodyID(s.user.Name, s.v.mailbox, fd.uid, id); err != nil {
			s.fail(KindInconsistent, "%v", err)
		}
	}
	for _, u := range uids {
		if !got[u] && s.v.has(u) {
			s.v.mustGo[u] = "left out of UID FETCH BODY[]"
		}
	}
	return nil
}

// opFetchHeaders fetches ENVELOPE, BODYSTRUCTURE and a header field of a
// range by sequence number.
func (s *session) opFetchHeaders(rng *rand.Rand) error {
	n := s.v.count()
	if n == 0 {
		return s.opNoop(rng)
	}
	a := 1 + rng.IntN(n)
	set := fmt.Sprintf("%d:%d", a, min(a+rng.IntN(10), n))
	rep, cmd, err := s.exec("FETCH", set+" (UID ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (X-STRESS-ID)])", nil)
	if err != nil {
		return err
	}
	if rep.status != "OK" {
		s.fail(KindInconsistent, "FETCH headers: %s", rep)
		return nil
	}
	for _, want := range s.seqRange(set) {
		fd, ok := cmd.fetched[want]
		if !ok || fd.header == "" {
			// Not answered (a flag update of another session may have come
			// for it): it was expunged meanwhile.
			if want <= s.v.count() && s.v.uids[want-1] != 0 {
				s.v.mustGo[s.v.uids[want-1]] = "left out of FETCH " + set
			}
			continue
		}
		id := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(fd.header), "X-Stress-Id:"))
		if id == "" || fd.uid == 0 {
			s.fail(KindInconsistent, "%s: FETCH %d: no UID or X-Stress-Id in %q", s.v.mailbox, want, fd.header)
			continue
		}
		if err := s.run.state.bodyID(s.user.Name, s.v.mailbox, fd.uid, id); err != nil {
			s.fail(KindInconsistent, "%v", err)
		}
	}
	return nil
}

// opStore sets or clears this client's keyword (checked exactly) or a
// system flag (other clients change those too).
func (s *session) opStore(rng *rand.Rand) error {
	uids := s.someUIDs(rng, 1+rng.IntN(4))
	if len(uids) == 0 {
		return s.opNoop(rng)
	}
	add := rng.IntN(2) == 0
	sign := "-"
	if add {
		sign = "+"
	}
	flag := s.keyword
	own := true
	if rng.IntN(3) == 0 {
		flag, own = []string{`\Seen`, `\Flagged`, `\Answered`}[rng.IntN(3)], false
	}
	silent := rng.IntN(4) == 0
	item := sign + "FLAGS"
	if silent {
		item += ".SILENT"
	}
	if own {
		for _, u := range uids {
			s.setOwnKeyword(s.v.mailbox, u, kwState{set: add, pending: true})
		}
	}
	mailbox := s.v.mailbox
	rep, cmd, err := s.exec("UID STORE", formatSet(uids)+" "+item+" ("+flag+")", nil)
	if err != nil {
		return err
	}
	if rep.status != "OK" {
		s.fail(KindInconsistent, "UID STORE: %s", rep)
		return nil
	}
	if !own || s.v == nil || s.v.mailbox != mailbox {
		return nil
	}
	// RFC 9051 6.4.6: without .SILENT the server answers with each
	// message's flags after the change. A message another session
	// expunged meanwhile may get no answer, or a last flag update from
	// before: its keyword stays unknown until the next NOOP, which must
	// then have announced its expunge if the answer was not right.
	answered := map[uint32]bool{}
	if !silent {
		for _, fd := range cmd.fetched {
			if fd.uid != 0 && fd.hasFlags && slices.Contains(uids, fd.uid) && hasFlag(fd.flags, s.keyword) == add {
				answered[fd.uid] = true
			}
		}
	}
	for _, u := range uids {
		if answered[u] {
			s.setOwnKeyword(mailbox, u, kwState{set: add})
			continue
		}
		if !silent && s.v.has(u) {
			s.v.unconfirmed[u] = "UID STORE answered without its " + sign + s.keyword
		} else {
			s.v.unconfirmed[u] = ""
		}
	}
	return nil
}

func hasFlag(flags []string, f string) bool {
	for _, g := range flags {
		if strings.EqualFold(g, f) {
			return true
		}
	}
	return false
}

// opAppend appends a corpus message with a stress header to INBOX or
// Archive; its APPENDUID must be above every UID seen before.
func (s *session) opAppend(rng *rand.Rand) error {
	mailbox := mailboxes[rng.IntN(len(mailboxes))]
	if rng.IntN(3) > 0 && s.v != nil {
		mailbox = s.v.mailbox
	}
	msg, id := s.run.message(rng, s.client)
	flags := ""
	withKw := rng.IntN(2) == 0
	if withKw {
		flags = "(" + s.keyword + ") "
	}
	maxBefore := s.run.state.maxUID(s.user.Name, mailbox)
	if s.v != nil && s.v.mailbox == mailbox {
		maxBefore = max(maxBefore, s.v.maxUID)
	}
	rep, _, err := s.exec("APPEND", quote(mailbox)+" "+flags+"{"+strconv.Itoa(len(msg))+"+}", msg)
	if err != nil {
		return err
	}
	if rep.status != "OK" {
		s.fail(KindInconsistent, "APPEND: %s", rep)
		return nil
	}
	f := strings.Fields(rep.code)
	if len(f) != 3 || f[0] != "APPENDUID" {
		s.fail(KindInconsistent, "APPEND answered %s without APPENDUID (RFC 4315 3)", rep)
		return nil
	}
	validity, _ := strconv.ParseUint(f[1], 10, 32)
	uid64, _ := strconv.ParseUint(f[2], 10, 32)
	uid := uint32(uid64)
	if err := s.run.state.uidValidity(s.user.Name, mailbox, uint32(validity)); err != nil {
		s.fail(KindInconsistent, "APPENDUID: %v", err)
	}
	if uid <= maxBefore {
		s.fail(KindInconsistent, "%s: APPENDUID %d is not above UID %d seen before the APPEND (UIDs ascend, RFC 9051 2.3.1.1)", mailbox, uid, maxBefore)
	}
	s.run.state.seenUID(s.user.Name, mailbox, uid)
	if err := s.run.state.bodyID(s.user.Name, mailbox, uid, id); err != nil {
		s.fail(KindInconsistent, "%v", err)
	}
	s.setOwnKeyword(mailbox, uid, kwState{set: withKw})
	return nil
}

// opExpunge marks messages \Deleted and expunges them by UID (RFC 4315
// 2.1), or now and then with a plain EXPUNGE.
func (s *session) opExpunge(rng *rand.Rand) error {
	uids := s.someUIDs(rng, 1+rng.IntN(3))
	if len(uids) == 0 {
		return s.opNoop(rng)
	}
	set := formatSet(uids)
	rep, _, err := s.exec("UID STORE", set+` +FLAGS.SILENT (\Deleted)`, nil)
	if err != nil {
		return err
	}
	if rep.status != "OK" {
		s.fail(KindInconsistent, "UID STORE \\Deleted: %s", rep)
		return nil
	}
	name, args := "UID EXPUNGE", set
	if rng.IntN(5) == 0 {
		name, args = "EXPUNGE", ""
	}
	rep, _, err = s.exec(name, args, nil)
	if err != nil {
		return err
	}
	if rep.status != "OK" {
		s.fail(KindInconsistent, "%s: %s", name, rep)
		return nil
	}
	for _, u := range uids {
		if s.v.has(u) {
			s.v.mustGo[u] = "expunged by this session"
		}
	}
	return nil
}

// opCopy copies to the other mailbox; COPYUID pairs every source UID with
// a new one there (RFC 4315 3).
func (s *session) opCopy(rng *rand.Rand) error { return s.copyOrMove(rng, "UID COPY") }

// opMove moves to the other mailbox; RFC 6851 3.3: the moved messages are
// expunged from the source before the tagged OK.
func (s *session) opMove(rng *rand.Rand) error { return s.copyOrMove(rng, "UID MOVE") }

func (s *session) copyOrMove(rng *rand.Rand, name string) error {
	uids := s.someUIDs(rng, 1+rng.IntN(3))
	if len(uids) == 0 {
		return s.opNoop(rng)
	}
	src := s.v.mailbox
	dest := mailboxes[0]
	if src == dest {
		dest = mailboxes[1]
	}
	ids := map[uint32]string{}
	for _, u := range uids {
		ids[u] = s.run.state.idOf(s.user.Name, src, u)
	}
	maxDest := s.run.state.maxUID(s.user.Name, dest)
	rep, cmd, err := s.exec(name, formatSet(uids)+" "+quote(dest), nil)
	if err != nil {
		return err
	}
	if rep.status != "OK" {
		s.fail(KindInconsistent, "%s: %s", name, rep)
		return nil
	}
	code := rep.code
	if name == "UID MOVE" {
		code = cmd.copyUID
	}
	if code == "" {
		// Nothing copied: every source message was expunged meanwhile.
		for _, u := range uids {
			if s.v.has(u) {
				s.v.mustGo[u] = name + " copied nothing"
			}
		}
		return nil
	}
	f := strings.Fields(code)
	if len(f) != 4 || f[0] != "COPYUID" {
		s.fail(KindInconsistent, "%s answered %q (RFC 4315 3: COPYUID validity source-set dest-set)", name, code)
		return nil
	}
	validity, _ := strconv.ParseUint(f[1], 10, 32)
	if err := s.run.state.uidValidity(s.user.Name, dest, uint32(validity)); err != nil {
		s.fail(KindInconsistent, "COPYUID: %v", err)
	}
	from, err1 := parseUIDSet(f[2])
	to, err2 := parseUIDSet(f[3])
	if err1 != nil || err2 != nil || len(from) != len(to) {
		s.fail(KindInconsistent, "COPYUID %s %s: sets do not pair up", f[2], f[3])
		return nil
	}
	for i, u := range from {
		if !slices.Contains(uids, u) {
			s.fail(KindInconsistent, "COPYUID names source UID %d, not in %s", u, formatSet(uids))
		}
		if to[i] <= maxDest {
			s.fail(KindInconsistent, "%s: COPYUID gives UID %d, not above UID %d seen before", dest, to[i], maxDest)
		}
		if i > 0 && to[i] <= to[i-1] {
			s.fail(KindInconsistent, "COPYUID destination UIDs %s do not ascend", f[3])
		}
		s.run.state.seenUID(s.user.Name, dest, to[i])
		if id := ids[u]; id != "" {
			if err := s.run.state.bodyID(s.user.Name, dest, to[i], id); err != nil {
				s.fail(KindInconsistent, "%v", err)
			}
		}
		if name == "UID MOVE" && s.v.has(u) {
			s.fail(KindInconsistent, "%s: UID %d moved (COPYUID) but not expunged before the tagged OK (RFC 6851 3.3)", src, u)
		}
	}
	for _, u := range uids {
		if !slices.Contains(from, u) && s.v.has(u) {
			s.v.mustGo[u] = name + " left it out"
		}
	}
	return nil
}

// opSearch checks SEARCH results against the view: a UID SEARCH ALL names
// every message not expunged, a search for this client's keyword exactly
// those it set it on.
func (s *session) opSearch(rng *rand.Rand) error {
	switch rng.IntN(3) {
	case 0:
		rep, cmd, err := s.exec("UID SEARCH", "ALL", nil)
		if err != nil || rep.status != "OK" {
			if err == nil {
				s.fail(KindInconsistent, "UID SEARCH ALL: %s", rep)
			}
			return err
		}
		s.checkSearchUIDs(cmd.search, func(uint32) bool { return true }, "UID SEARCH ALL")
	case 1:
		rep, cmd, err := s.exec("UID SEARCH", "KEYWORD "+s.keyword, nil)
		if err != nil || rep.status != "OK" {
			if err == nil {
				s.fail(KindInconsistent, "UID SEARCH KEYWORD: %s", rep)
			}
			return err
		}
		mine := s.ownKw[s.v.mailbox]
		for _, u := range cmd.search {
			if st, ok := mine[u]; ok && !st.pending && !st.set {
				s.fail(KindInconsistent, "%s: UID SEARCH KEYWORD %s found UID %d, which this client cleared it on", s.v.mailbox, s.keyword, u)
			}
		}
		s.checkSearchUIDs(cmd.search, func(u uint32) bool { st, ok := mine[u]; return ok && st.set }, "UID SEARCH KEYWORD")
	default:
		rep, cmd, err := s.exec("SEARCH", "UNSEEN", nil)
		if err != nil || rep.status != "OK" {
			if err == nil {
				s.fail(KindInconsistent, "SEARCH UNSEEN: %s", rep)
			}
			return err
		}
		for _, n := range cmd.search {
			if n < 1 || int(n) > s.v.count() {
				s.fail(KindInconsistent, "%s: SEARCH UNSEEN found sequence number %d of %d", s.v.mailbox, n, s.v.count())
			}
		}
	}
	return nil
}

// checkSearchUIDs: a UID a search returns must be one the client was told
// of (the server announces arrivals before the result), and a message the
// client expects in it that is missing must have been expunged meanwhile.
func (s *session) checkSearchUIDs(found []uint32, expected func(uint32) bool, what string) {
	in := map[uint32]bool{}
	unknown := s.v.unknown()
	for _, u := range found {
		in[u] = true
		if !s.v.has(u) && unknown == 0 {
			s.fail(KindInconsistent, "%s: %s found UID %d, which the client was never told of", s.v.mailbox, what, u)
		}
	}
	for _, u := range s.v.knownUIDs() {
		if expected(u) && !in[u] {
			s.v.mustGo[u] = "left out of " + what
		}
	}
}

// opNoop polls; whatever the server left out or this session expunged must
// be announced as expunged by now.
func (s *session) opNoop(*rand.Rand) error {
	rep, _, err := s.exec("NOOP", "", nil)
	if err != nil {
		return err
	}
	if rep.status != "OK" {
		s.fail(KindInconsistent, "NOOP: %s", rep)
	}
	s.checkMustGo("NOOP")
	// Stores of this client's keyword not confirmed by their answer: a
	// message still there now has it as stored (every update is flushed).
	mine := s.ownKw[s.v.mailbox]
	for u, why := range s.v.unconfirmed {
		delete(s.v.unconfirmed, u)
		if !s.v.has(u) {
			continue
		}
		if why != "" {
			s.fail(KindInconsistent, "%s: UID %d: %s, and it was not expunged", s.v.mailbox, u, why)
		}
		if st, ok := mine[u]; ok {
			s.setOwnKeyword(s.v.mailbox, u, kwState{set: st.set})
		}
	}
	return nil
}

func (s *session) checkMustGo(after string) {
	for u, why := range s.v.mustGo {
		if s.v.has(u) {
			s.fail(KindInconsistent, "%s: UID %d (%s) still not announced as expunged after %s", s.v.mailbox, u, why, after)
		}
		delete(s.v.mustGo, u)
	}
}

// opIdle idles for a moment (RFC 2177): the continuation, pushed updates,
// DONE and the tagged OK.
func (s *session) opIdle(rng *rand.Rand) error {
	if s.zw != nil {
		// The client ends IDLE on a read timeout, which a deflate reader
		// cannot resume after; compressed IDLE is TestIMAPCompressDeflate's.
		return s.opNoop(rng)
	}
	s.tagN++
	tag := "s" + strconv.Itoa(s.tagN)
	cmd := &command{name: "IDLE", fetched: map[int]fetchData{}}
	s.cur = cmd
	defer func() { s.cur = nil }()
	s.note("C: ", tag+" IDLE")
	start := time.Now()
	s.conn.SetDeadline(start.Add(s.run.cfg.CommandTimeout))
	if _, err := s.w.WriteString(tag + " IDLE\r\n"); err != nil {
		return s.ioError(err)
	}
	if err := s.flush(); err != nil {
		return s.ioError(err)
	}
	done := false
	var resync error // a VANISHED the view cannot place: IDLE still ends properly
	stopAt := time.Now().Add(time.Duration(100+rng.IntN(1400)) * time.Millisecond)
	for {
		if cmd.idling && !done {
			s.conn.SetReadDeadline(stopAt)
		}
		l, err := readResponse(s.r)
		if err != nil && cmd.idling && !done && isTimeout(err) && time.Now().After(stopAt.Add(-time.Millisecond)) {
			s.note("C: ", "DONE")
			s.conn.SetDeadline(time.Now().Add(s.run.cfg.CommandTimeout))
			if _, err := s.w.WriteString("DONE\r\n"); err != nil {
				return s.ioError(err)
			}
			if err := s.flush(); err != nil {
				return s.ioError(err)
			}
			done = true
			continue
		}
		if err != nil {
			return s.ioError(err)
		}
		s.note("S: ", string(l))
		if bytes.HasPrefix(l, []byte(tag+" ")) {
			rep := parseStatus(string(l[len(tag)+1:]))
			s.run.stats.add("IDLE", time.Since(start))
			if rep.status != "OK" || !cmd.idling {
				s.fail(KindServerBug, "IDLE answered %s (continuation seen: %v)", rep, cmd.idling)
			}
			return resync
		}
		if err := s.untagged(l); err == errResync {
			resync = err
		} else if err != nil {
			return err
		}
	}
}

func isTimeout(err error) bool {
	type timeout interface{ Timeout() bool }
	t, ok := err.(timeout)
	return ok && t.Timeout()
}

// opSelect selects INBOX or Archive, now and then read-only.
func (s *session) opSelect(rng *rand.Rand) error {
	return s.selectMailbox(mailboxes[rng.IntN(len(mailboxes))], rng.IntN(5) == 0)
}

// opLogout ends the session properly (RFC 9051 6.1.3: BYE, then the tagged
// OK) and logs in again.
func (s *session) opLogout(*rand.Rand) error {
	rep, _, err := s.exec("LOGOUT", "", nil)
	if err != nil {
		return err
	}
	if rep.status != "OK" {
		s.fail(KindInconsistent, "LOGOUT: %s", rep)
	}
	s.close()
	return s.login()
}

// message returns a corpus message with two stress headers in front: a
// unique id and the SHA-256 of the rest, so every FETCH of the body can be
// checked.
func (r *runner) message(rng *rand.Rand, client int) ([]byte, string) {
	id := fmt.Sprintf("c%d-%d", client, r.nextID.Add(1))
	return Tagged(id, r.corpus[rng.IntN(len(r.corpus))]), id
}

// Tagged returns base, with CRLF line ends, and the two stress headers in
// front: id, which must be unique, and the SHA-256 of the rest. A mailbox
// filled with tagged messages before a run (a large one, say) is checked
// like the messages the clients append.
func Tagged(id string, base []byte) []byte {
	base = toCRLF(base)
	sum := sha256.Sum256(base)
	msg := make([]byte, 0, len(base)+128)
	msg = fmt.Appendf(msg, "X-Stress-Id: %s\r\nX-Stress-Sum: %s\r\n", id, hex.EncodeToString(sum[:]))
	return append(msg, base...)
}

// checkBody checks a fetched message against its own stress headers.
func checkBody(body string) (string, error) {
	idLine, rest, ok1 := strings.Cut(body, "\r\n")
	sumLine, content, ok2 := strings.Cut(rest, "\r\n")
	id, okID := strings.CutPrefix(idLine, "X-Stress-Id: ")
	want, okSum := strings.CutPrefix(sumLine, "X-Stress-Sum: ")
	if !ok1 || !ok2 || !okID || !okSum {
		return "", fmt.Errorf("BODY[] does not start with the stress headers: %.120q", body)
	}
	sum := sha256.Sum256([]byte(content))
	if hex.EncodeToString(sum[:]) != want {
		return "", fmt.Errorf("BODY[] of %s (%d octets) does not match its checksum", id, len(body))
	}
	return id, nil
}
