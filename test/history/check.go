package history

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// The rules, one per invariant of the issue (numbers as there).
const (
	RuleLost      = "lost"      // (1) nothing acknowledged lost; nothing vanishes without a removal
	RuleDuplicate = "duplicate" // (2) no message more often than the history explains (nor one nobody sent)
	RuleUID       = "uid"       // (3) UIDs unique and ascending, UIDVALIDITY constant
	RuleModSeq    = "modseq"    // (4) MODSEQ strictly increases with every change
	RuleFlags     = "flags"     // (5) final flags are those of the last acknowledged STORE
	RuleAtomic    = "atomic"    // (6) COPY and MOVE all or nothing, for the answer and for observers
	RuleBody      = "body"      // (7) every indexed body readable and as sent
	RuleExpunge   = "expunge"   // an acknowledged EXPUNGE or POP3 QUIT removed what it had to
	RuleIndex     = "index"     // IMAP and the storage index show the same mailbox
	RuleHistory   = "history"   // the history itself is malformed (a driver bug)
)

// Inbox is the mailbox deliveries and POP3 use.
const Inbox = "INBOX"

// Violation is one broken invariant and the ops that show it.
type Violation struct {
	Rule string
	Text string
	Ops  []*Op
}

// Report formats v with the ops involved, for a test log.
func (h *History) Report(v Violation) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s", v.Rule, v.Text)
	seen := map[*Op]bool{}
	for _, op := range v.Ops {
		if op == nil || seen[op] {
			continue
		}
		seen[op] = true
		b.WriteString("\n    ")
		b.WriteString(h.Describe(op))
	}
	return b.String()
}

type mbox struct{ acct, name string }

func (m mbox) String() string { return m.acct + "/" + m.name }

// inst is a message instance: a UID in a mailbox.
type inst struct {
	mb  mbox
	uid uint32
}

func (i inst) String() string { return fmt.Sprintf("%s UID %d", i.mb, i.uid) }

type checker struct {
	h   *History
	f   *Final
	vs  []Violation
	cov Coverage

	final   map[mbox]*FinalMailbox
	present map[inst]Msg // the final state (index entry, else IMAP)

	// tokenOf is what each instance is known to hold, and who said so
	// (nil: the final state).
	tokenOf  map[inst]string
	tokenBy  map[inst]*Op
	reported map[string]bool
	// exists holds every instance something proved to exist at some time,
	// with the op that proved it.
	exists map[inst]*Op
	// bodyOf and origin: the body sent with each token and the op that sent it.
	bodyOf map[string]string
	origin map[string]*Op
	// removers are the ops that may have removed an instance (EXPUNGE and
	// MOVE naming its UID, POP3 DELE of it) and did not fail.
	removers map[inst][]*Op
	// stores are the STOREs naming an instance that did not fail.
	stores map[inst][]*Op
}

// Coverage counts what each rule examined, so that a run with no
// violation can show that its rules had something to check.
type Coverage map[string]int

// Check proves the invariants on a history and the final state, and
// returns every violation found (none: the run was correct) and what the
// rules examined.
func Check(h *History, f *Final) ([]Violation, Coverage) {
	c := &checker{h: h, f: f, cov: Coverage{},
		final: map[mbox]*FinalMailbox{}, present: map[inst]Msg{},
		tokenOf: map[inst]string{}, tokenBy: map[inst]*Op{}, reported: map[string]bool{},
		exists: map[inst]*Op{}, bodyOf: map[string]string{}, origin: map[string]*Op{},
		removers: map[inst][]*Op{}, stores: map[inst][]*Op{},
	}
	c.index()
	c.checkFinal()
	c.learnTokens()
	c.checkUIDValidity()
	c.checkVanished()
	c.checkCreated()
	c.checkCopyMove()
	c.checkObservers()
	c.checkRemovals()
	c.checkUIDOrder()
	c.checkModSeqs()
	c.checkFlags()
	return c.vs, c.cov
}

func (c *checker) fail(rule string, ops []*Op, format string, args ...any) {
	c.vs = append(c.vs, Violation{Rule: rule, Text: fmt.Sprintf(format, args...), Ops: ops})
}

// once reports a violation only the first time key is seen.
func (c *checker) once(key string) bool {
	if c.reported[key] {
		return false
	}
	c.reported[key] = true
	return true
}

func srcBox(op *Op) mbox  { return mbox{op.Account, op.Mailbox} }
func destBox(op *Op) mbox { return mbox{op.Account, op.Dest} }

// index builds the maps every rule uses.
func (c *checker) index() {
	for i := range c.f.Mailboxes {
		fm := &c.f.Mailboxes[i]
		mb := mbox{fm.Account, fm.Name}
		c.final[mb] = fm
		for _, m := range fm.IMAP {
			c.present[inst{mb, m.UID}] = m
		}
		for _, m := range fm.Index {
			c.present[inst{mb, m.UID}] = m
		}
	}
	for _, op := range c.h.Ops {
		if op.Outcome == Pending {
			c.fail(RuleHistory, []*Op{op}, "op never ended")
			continue
		}
		if (op.Kind == Append || op.Kind == Deliver) && op.Token != "" {
			c.bodyOf[op.Token] = op.BodySum
			c.origin[op.Token] = op
		}
		if op.Outcome == Failed {
			continue
		}
		switch op.Kind {
		case Expunge, Move:
			for _, u := range op.UIDs {
				i := inst{srcBox(op), u}
				c.removers[i] = append(c.removers[i], op)
			}
		case POP3:
			for _, u := range op.UIDs {
				i := inst{mbox{op.Account, Inbox}, u}
				c.removers[i] = append(c.removers[i], op)
			}
		case Store:
			for _, u := range op.UIDs {
				i := inst{srcBox(op), u}
				c.stores[i] = append(c.stores[i], op)
			}
		}
	}
}

// checkFinal: IMAP and the index agree, UIDs ascend, bodies are readable.
func (c *checker) checkFinal() {
	for _, fm := range c.f.Mailboxes {
		mb := mbox{fm.Account, fm.Name}
		for _, list := range []struct {
			name string
			msgs []Msg
		}{{"IMAP", fm.IMAP}, {"the index", fm.Index}} {
			for k, m := range list.msgs {
				if k > 0 && m.UID <= list.msgs[k-1].UID {
					c.fail(RuleUID, nil, "%s lists %s UID %d after UID %d: not strictly ascending", list.name, mb, m.UID, list.msgs[k-1].UID)
				}
				if fm.UIDNext != 0 && m.UID >= fm.UIDNext {
					c.fail(RuleUID, nil, "%s lists %s UID %d at or above UIDNEXT %d", list.name, mb, m.UID, fm.UIDNext)
				}
				if m.BodyErr != "" {
					c.fail(RuleBody, nil, "the body of %s UID %d (token %s) is unreadable through %s: %s", mb, m.UID, m.Token, list.name, m.BodyErr)
				}
				if m.Token == "" {
					c.fail(RuleDuplicate, nil, "%s shows %s UID %d, a message without a token that nobody sent", list.name, mb, m.UID)
				}
			}
		}
		c.cov["final messages compared (IMAP, index, bodies)"] += len(fm.Index)
		imap := map[uint32]Msg{}
		for _, m := range fm.IMAP {
			imap[m.UID] = m
		}
		for _, m := range fm.Index {
			im, ok := imap[m.UID]
			if !ok {
				c.fail(RuleIndex, nil, "%s UID %d (token %s) is indexed but IMAP does not show it", mb, m.UID, m.Token)
				continue
			}
			delete(imap, m.UID)
			if flagKey(im.Flags) != flagKey(m.Flags) {
				c.fail(RuleIndex, nil, "%s UID %d: IMAP shows flags %v, the index %v", mb, m.UID, im.Flags, m.Flags)
			}
			if im.Token != m.Token {
				c.fail(RuleIndex, nil, "%s UID %d: IMAP shows token %s, the index %s", mb, m.UID, im.Token, m.Token)
			}
			if im.BodySum != "" && m.BodySum != "" && im.BodySum != m.BodySum {
				c.fail(RuleBody, nil, "%s UID %d: IMAP and the storage API return different bodies", mb, m.UID)
			}
		}
		for uid, m := range imap {
			c.fail(RuleIndex, nil, "%s UID %d (token %s) is shown by IMAP but not indexed", mb, uid, m.Token)
		}
		if fm.HighestModSeq != 0 {
			for _, m := range fm.Index {
				if m.ModSeq == 0 || m.ModSeq > fm.HighestModSeq {
					c.fail(RuleModSeq, nil, "%s UID %d has MODSEQ %d, HIGHESTMODSEQ is %d", mb, m.UID, m.ModSeq, fm.HighestModSeq)
				}
			}
		}
	}
}

// name records that instance i holds token, as op says (nil: the final
// state). Two tokens for one UID: the UID was reused.
func (c *checker) name(i inst, token string, op *Op) bool {
	if token == "" {
		return false
	}
	if _, ok := c.exists[i]; !ok || op != nil && c.exists[i] == nil {
		c.exists[i] = op
	}
	prev, ok := c.tokenOf[i]
	if !ok {
		c.tokenOf[i], c.tokenBy[i] = token, op
		return true
	}
	if prev != token && c.once("reuse "+i.String()) {
		c.fail(RuleUID, []*Op{c.tokenBy[i], op, c.origin[prev], c.origin[token]},
			"%s names two messages: %s and %s (a UID used twice)", i, prev, token)
	}
	return false
}

// learnTokens gathers what every instance holds from every answer, and
// checks every body read against the body sent.
func (c *checker) learnTokens() {
	for i, m := range c.present {
		c.name(i, m.Token, nil)
	}
	for _, op := range c.h.Ops {
		switch {
		case op.Kind == Append && op.Outcome == OK && op.UID != 0:
			c.name(inst{srcBox(op), op.UID}, op.Token, op)
		case op.Kind == Deliver:
			for _, r := range op.Recipients {
				if r.Outcome == OK && r.UID != 0 {
					c.name(inst{mbox{r.Account, Inbox}, r.UID}, op.Token, op)
				}
			}
		case (op.Kind == Fetch || op.Kind == Read || op.Kind == List) && op.Outcome == OK:
			for _, m := range op.Msgs {
				c.name(inst{srcBox(op), m.UID}, m.Token, op)
			}
		case op.Kind == POP3:
			for _, m := range op.Msgs {
				c.name(inst{mbox{op.Account, Inbox}, m.UID}, m.Token, op)
			}
		}
	}
	// A copy holds what its source held.
	for changed := true; changed; {
		changed = false
		for _, op := range c.h.Ops {
			if (op.Kind != Copy && op.Kind != Move) || op.Outcome != OK || len(op.SrcUIDs) != len(op.DestUIDs) {
				continue
			}
			for k := range op.SrcUIDs {
				s, d := inst{srcBox(op), op.SrcUIDs[k]}, inst{destBox(op), op.DestUIDs[k]}
				if t, ok := c.tokenOf[s]; ok {
					changed = c.name(d, t, op) || changed
				} else if t, ok := c.tokenOf[d]; ok {
					changed = c.name(s, t, op) || changed
				}
			}
		}
	}
	// Instances proved to exist without a token known (a copy of an
	// unidentified source) still exist.
	for _, op := range c.h.Ops {
		if (op.Kind == Copy || op.Kind == Move) && op.Outcome == OK {
			for _, u := range op.DestUIDs {
				if _, ok := c.exists[inst{destBox(op), u}]; !ok {
					c.exists[inst{destBox(op), u}] = op
				}
			}
		}
	}
	// Bodies read must be the bodies sent.
	check := func(i inst, m Msg, op *Op, where string) {
		if m.BodySum == "" {
			return
		}
		t := m.Token
		if t == "" {
			t = c.tokenOf[i]
		}
		want, ok := c.bodyOf[t]
		if ok && want != m.BodySum && c.once("body "+i.String()+where) {
			c.fail(RuleBody, []*Op{op, c.origin[t]}, "%s (token %s) read through %s is not the body sent", i, t, where)
		}
	}
	for _, fm := range c.f.Mailboxes {
		mb := mbox{fm.Account, fm.Name}
		for _, m := range fm.IMAP {
			check(inst{mb, m.UID}, m, nil, "IMAP (final)")
		}
		for _, m := range fm.Index {
			check(inst{mb, m.UID}, m, nil, "the storage API (final)")
		}
	}
	for _, op := range c.h.Ops {
		switch {
		case (op.Kind == Fetch || op.Kind == Read) && op.Outcome == OK:
			for _, m := range op.Msgs {
				check(inst{srcBox(op), m.UID}, m, op, "IMAP FETCH")
			}
		case op.Kind == POP3:
			for _, m := range op.Msgs {
				check(inst{mbox{op.Account, Inbox}, m.UID}, m, op, "POP3 RETR")
			}
		}
	}
}

// checkUIDValidity: every answer names the mailbox's one UIDVALIDITY.
func (c *checker) checkUIDValidity() {
	seen := func(mb mbox, v uint32, op *Op) {
		if v == 0 {
			return
		}
		fm, ok := c.final[mb]
		if !ok {
			if c.once("gone " + mb.String()) {
				c.fail(RuleLost, []*Op{op}, "mailbox %s is gone", mb)
			}
			return
		}
		if v != fm.UIDValidity && c.once(fmt.Sprintf("validity %s %d", mb, v)) {
			c.fail(RuleUID, []*Op{op}, "%s had UIDVALIDITY %d, now %d: UIDVALIDITY changed", mb, v, fm.UIDValidity)
		}
	}
	for _, op := range c.h.Ops {
		if op.Outcome != OK && op.Kind != Deliver && op.Kind != POP3 {
			continue
		}
		switch op.Kind {
		case Append, List, Fetch, Read:
			seen(srcBox(op), op.UIDValidity, op)
		case Copy, Move:
			seen(destBox(op), op.UIDValidity, op)
		case POP3:
			seen(mbox{op.Account, Inbox}, op.UIDValidity, op)
		case Deliver:
			for _, r := range op.Recipients {
				if r.Outcome == OK {
					seen(mbox{r.Account, Inbox}, r.UIDValidity, op)
				}
			}
		}
	}
}

// checkVanished (1): a message once proved to exist is still there unless
// an EXPUNGE, MOVE or POP3 session that did not fail named its UID. This
// covers every acknowledged APPEND, delivery and COPY (their answers prove
// the new UIDs), and every removal that failed (it must have left its
// messages).
func (c *checker) checkVanished() {
	c.cov["messages proved to exist, checked for loss"] = len(c.exists)
	for i, op := range c.exists {
		if _, ok := c.present[i]; ok || len(c.removers[i]) > 0 {
			continue
		}
		t := c.tokenOf[i]
		var ops []*Op
		ops = append(ops, op, c.origin[t])
		for _, o := range c.h.Ops {
			// Failed removals of it: they must not have taken effect.
			if o.Outcome == Failed && (o.Kind == Expunge || o.Kind == Move || o.Kind == POP3) && srcBox(o) == i.mb && containsUID(o.UIDs, i.uid) {
				ops = append(ops, o)
			}
		}
		c.fail(RuleLost, ops, "%s (token %s) is gone, and no EXPUNGE, MOVE or POP3 DELE that could have taken effect named it", i, t)
	}
}

// creators counts, per mailbox and token, how many instances the ops that
// did not fail could have created; any counts copies of unidentified
// sources, which could be any token.
type creators struct {
	n   map[mbox]map[string]int
	ops map[mbox]map[string][]*Op
	any map[mbox][]*Op
}

func (c *checker) creators() *creators {
	cr := &creators{n: map[mbox]map[string]int{}, ops: map[mbox]map[string][]*Op{}, any: map[mbox][]*Op{}}
	add := func(mb mbox, t string, op *Op) {
		if cr.n[mb] == nil {
			cr.n[mb], cr.ops[mb] = map[string]int{}, map[string][]*Op{}
		}
		cr.n[mb][t]++
		cr.ops[mb][t] = append(cr.ops[mb][t], op)
	}
	for _, op := range c.h.Ops {
		if op.Outcome == Failed || op.Outcome == Pending {
			continue
		}
		switch op.Kind {
		case Append:
			add(srcBox(op), op.Token, op)
		case Deliver:
			for _, r := range op.Recipients {
				if r.Outcome != Failed {
					add(mbox{r.Account, Inbox}, op.Token, op)
				}
			}
		case Copy, Move:
			for _, u := range op.UIDs {
				if t, ok := c.tokenOf[inst{srcBox(op), u}]; ok {
					add(destBox(op), t, op)
				} else {
					cr.any[destBox(op)] = append(cr.any[destBox(op)], op)
				}
			}
		}
	}
	return cr
}

// checkCreated: (1) acknowledged APPENDs and deliveries without a UID in
// their answer are there by token; (2) no token is in a mailbox more often
// than the ops that did not fail could have put it there.
func (c *checker) checkCreated() {
	byToken := map[mbox]map[string][]uint32{}
	for i, m := range c.present {
		if byToken[i.mb] == nil {
			byToken[i.mb] = map[string][]uint32{}
		}
		if m.Token != "" {
			byToken[i.mb][m.Token] = append(byToken[i.mb][m.Token], i.uid)
		}
	}
	for _, op := range c.h.Ops {
		switch {
		case op.Kind == Append && op.Outcome == OK && op.UID == 0:
			if len(byToken[srcBox(op)][op.Token]) == 0 && !c.removedToken(srcBox(op), op.Token) {
				c.fail(RuleLost, []*Op{op}, "acknowledged APPEND of %s is not in %s", op.Token, srcBox(op))
			}
		case op.Kind == Deliver:
			for _, r := range op.Recipients {
				mb := mbox{r.Account, Inbox}
				if r.Outcome == OK && r.UID == 0 && len(byToken[mb][op.Token]) == 0 && !c.removedToken(mb, op.Token) {
					c.fail(RuleLost, []*Op{op}, "acknowledged delivery of %s is not in %s", op.Token, mb)
				}
			}
		}
	}
	cr := c.creators()
	for mb, tokens := range byToken {
		for t, uids := range tokens {
			bound := cr.n[mb][t] + len(cr.any[mb])
			if len(uids) <= bound {
				continue
			}
			ops := append(append([]*Op{c.origin[t]}, cr.ops[mb][t]...), cr.any[mb]...)
			for _, op := range c.h.Ops {
				// Show the failed ops that could have put it there.
				if op.Outcome == Failed && (op.Token == t || (op.Kind == Copy || op.Kind == Move) && op.Dest == mb.name && op.Account == mb.acct) {
					ops = append(ops, op)
				}
			}
			if bound == 0 {
				c.fail(RuleDuplicate, ops, "%s holds %s (UIDs %s), which no APPEND, delivery, COPY or MOVE that could have taken effect put there", mb, t, uidList(uids))
			} else {
				c.fail(RuleDuplicate, ops, "%s holds %s %d times (UIDs %s); the history explains at most %d", mb, t, len(uids), uidList(uids), bound)
			}
		}
	}
}

// checkCopyMove (6): COPY and MOVE take effect for all their messages or
// for none, and an acknowledged MOVE leaves nothing behind.
func (c *checker) checkCopyMove() {
	cr := c.creators()
	for _, op := range c.h.Ops {
		if op.Kind != Copy && op.Kind != Move {
			continue
		}
		src, dest := srcBox(op), destBox(op)
		if op.Outcome == OK {
			c.cov["acknowledged COPY/MOVE answers"]++
			if len(op.SrcUIDs) != len(op.DestUIDs) {
				c.fail(RuleAtomic, []*Op{op}, "COPYUID names %d source and %d destination UIDs", len(op.SrcUIDs), len(op.DestUIDs))
				continue
			}
			for _, u := range op.UIDs {
				// The UID came from the session's view, so the message
				// existed before; present at the end, it existed
				// throughout (UIDs never come back): it had to be copied.
				if _, ok := c.present[inst{src, u}]; ok && !containsUID(op.SrcUIDs, u) {
					c.fail(RuleAtomic, []*Op{op}, "acknowledged %s left out %s UID %d, which existed throughout", op.Kind, src, u)
				}
			}
			if op.Kind == Move {
				for _, u := range op.SrcUIDs {
					if _, ok := c.present[inst{src, u}]; ok {
						c.fail(RuleAtomic, []*Op{op}, "acknowledged MOVE left %s UID %d in its source", src, u)
					}
				}
			}
			continue
		}
		if op.Outcome != Unknown {
			continue // a failed one: checkVanished and checkCreated hold it to "nothing"
		}
		// An unknown one took effect if the destination holds a copy that
		// only it can explain. Then it took effect for every message that
		// existed throughout (present at the end, in the source's case).
		var proof []string
		for _, u := range op.UIDs {
			t, ok := c.tokenOf[inst{src, u}]
			if !ok || cr.n[dest][t] != 1 || len(cr.any[dest]) > 0 {
				continue
			}
			for i, m := range c.present {
				if i.mb == dest && m.Token == t {
					proof = append(proof, t)
					break
				}
			}
		}
		if len(proof) == 0 {
			continue
		}
		c.cov["unknown COPY/MOVE proved to have taken effect"]++
		for _, u := range op.UIDs {
			s := inst{src, u}
			t, ok := c.tokenOf[s]
			if _, there := c.present[s]; !ok || !there {
				continue
			}
			if op.Kind == Move {
				c.fail(RuleAtomic, []*Op{op}, "MOVE took effect (the destination holds %s) but %s (token %s) is still in its source", proof[0], s, t)
				continue
			}
			copied := false
			for i, m := range c.present {
				if i.mb == dest && m.Token == t {
					copied = true
					break
				}
			}
			if !copied && !c.removedToken(dest, t) {
				c.fail(RuleAtomic, []*Op{op}, "COPY took effect (the destination holds %s) but not for %s (token %s)", proof[0], s, t)
			}
		}
	}
}

// removedToken: a removal that did not fail named an instance of mb that
// holds token or holds something unknown.
func (c *checker) removedToken(mb mbox, token string) bool {
	for i, ops := range c.removers {
		if i.mb != mb || len(ops) == 0 {
			continue
		}
		if t, ok := c.tokenOf[i]; !ok || t == token {
			return true
		}
	}
	return false
}

// checkObservers (6): no view of a mailbox (an IMAP session's FETCH, a
// storage snapshot) ever holds part of an acknowledged COPY or MOVE: the
// copies arrive at once. A copy missing from a view is explained only by a
// removal naming it that was invoked before the view was answered.
func (c *checker) checkObservers() {
	views := map[mbox][]*Op{}
	for _, op := range c.h.Ops {
		if (op.Kind == Fetch || op.Kind == List) && op.Outcome == OK {
			views[srcBox(op)] = append(views[srcBox(op)], op)
		}
	}
	seenSets := map[*Op]map[uint32]bool{}
	for _, op := range c.h.Ops {
		if (op.Kind != Copy && op.Kind != Move) || op.Outcome != OK || len(op.DestUIDs) < 2 {
			continue
		}
		dest := destBox(op)
		for _, v := range views[dest] {
			if !v.Complete.After(op.Invoke) || v.UIDValidity != 0 && op.UIDValidity != 0 && v.UIDValidity != op.UIDValidity {
				continue
			}
			set := seenSets[v]
			if set == nil {
				set = map[uint32]bool{}
				for _, m := range v.Msgs {
					set[m.UID] = true
				}
				seenSets[v] = set
			}
			c.cov["views checked against COPY/MOVE"]++
			var seen, missing []uint32
			for _, u := range op.DestUIDs {
				if set[u] {
					seen = append(seen, u)
				} else {
					missing = append(missing, u)
				}
			}
			if len(seen) == 0 || len(missing) == 0 {
				continue
			}
			var unexplained []uint32
			for _, u := range missing {
				explained := false
				for _, r := range c.removers[inst{dest, u}] {
					explained = explained || r.Invoke.Before(v.Complete)
				}
				if !explained {
					unexplained = append(unexplained, u)
				}
			}
			if len(unexplained) > 0 {
				c.fail(RuleAtomic, []*Op{op, v}, "a view of %s held part of a %s: UIDs %s but not %s", dest, op.Kind, uidList(seen), uidList(unexplained))
			}
		}
	}
}

// checkRemovals: an acknowledged UID EXPUNGE removed every message its
// session had just marked \Deleted (unless a STORE that may have taken the
// flag away raced with it), and an acknowledged POP3 QUIT removed every
// message given DELE.
func (c *checker) checkRemovals() {
	for _, op := range c.h.Ops {
		if op.Outcome != OK {
			continue
		}
		switch op.Kind {
		case POP3:
			c.cov["acknowledged POP3 QUITs"]++
			for _, u := range op.UIDs {
				if _, ok := c.present[inst{mbox{op.Account, Inbox}, u}]; ok {
					c.fail(RuleExpunge, []*Op{op}, "POP3 DELE and QUIT acknowledged, but %s/INBOX UID %d is still there", op.Account, u)
				}
			}
		case Expunge:
			for _, u := range op.UIDs {
				i := inst{srcBox(op), u}
				// The session's own STORE that set \Deleted, last before it.
				var mark *Op
				for _, s := range c.stores[i] {
					if s.Outcome == OK && s.Client == op.Client && !s.Complete.After(op.Invoke) &&
						hasFlag(answerFor(s, u), `\Deleted`) && (mark == nil || s.Complete.After(mark.Complete)) {
						mark = s
					}
				}
				if mark == nil {
					continue
				}
				c.cov["marked messages an acknowledged EXPUNGE removed"]++
				if _, ok := c.present[i]; !ok {
					continue
				}
				raced := false
				for _, s := range c.stores[i] {
					if s == mark || !mayClear(s, `\Deleted`) {
						continue
					}
					// s may have committed between mark and the EXPUNGE.
					if s.Invoke.Before(op.Complete) && (s.Outcome == Unknown || s.Complete.After(mark.Invoke)) {
						raced = true
					}
				}
				if !raced {
					c.fail(RuleExpunge, []*Op{mark, op}, "acknowledged EXPUNGE left %s, which had \\Deleted", i)
				}
			}
		}
	}
}

// fact is an op that proves UIDs of a mailbox taken by time t.
type fact struct {
	t   time.Time
	max uint32
	op  *Op
}

// checkUIDOrder (3): a UID assigned by an op invoked after another op
// completed is above every UID that op assigned or saw (and above UIDNEXT
// of a snapshot); the final UIDNEXT is above every UID ever seen.
func (c *checker) checkUIDOrder() {
	facts := map[mbox][]fact{}
	type assignment struct {
		op   *Op
		mb   mbox
		uids []uint32
	}
	var assigned []assignment
	add := func(mb mbox, op *Op, uids []uint32, next uint32) {
		m := uint32(0)
		for _, u := range uids {
			m = max(m, u)
		}
		if next > 0 {
			m = max(m, next-1)
		}
		if m > 0 {
			facts[mb] = append(facts[mb], fact{op.Complete, m, op})
		}
	}
	for _, op := range c.h.Ops {
		if op.Outcome != OK && op.Kind != Deliver {
			continue
		}
		switch op.Kind {
		case Append:
			if op.UID != 0 {
				add(srcBox(op), op, []uint32{op.UID}, 0)
				assigned = append(assigned, assignment{op, srcBox(op), []uint32{op.UID}})
			}
		case Deliver:
			for _, r := range op.Recipients {
				if r.Outcome == OK && r.UID != 0 {
					mb := mbox{r.Account, Inbox}
					add(mb, op, []uint32{r.UID}, 0)
					assigned = append(assigned, assignment{op, mb, []uint32{r.UID}})
				}
			}
		case Copy, Move:
			if len(op.DestUIDs) > 0 {
				add(destBox(op), op, op.DestUIDs, 0)
				assigned = append(assigned, assignment{op, destBox(op), op.DestUIDs})
				for k := 1; k < len(op.DestUIDs); k++ {
					if op.DestUIDs[k] <= op.DestUIDs[k-1] || k < len(op.SrcUIDs) && op.SrcUIDs[k] <= op.SrcUIDs[k-1] {
						c.fail(RuleUID, []*Op{op}, "COPYUID of %s is not in ascending order", op.Kind)
						break
					}
				}
			}
		case Fetch, Read, List:
			var uids []uint32
			for _, m := range op.Msgs {
				uids = append(uids, m.UID)
			}
			add(srcBox(op), op, uids, op.UIDNext)
		}
	}
	// Prefix maxima of the facts by completion time.
	type prefix struct {
		times []time.Time
		max   []fact
	}
	pre := map[mbox]prefix{}
	for mb, fs := range facts {
		sort.Slice(fs, func(i, j int) bool { return fs[i].t.Before(fs[j].t) })
		p := prefix{}
		var best fact
		for _, f := range fs {
			if f.max > best.max {
				best = f
			}
			p.times = append(p.times, f.t)
			p.max = append(p.max, best)
		}
		pre[mb] = p
		if fm, ok := c.final[mb]; ok && fm.UIDNext != 0 && best.max >= fm.UIDNext {
			c.fail(RuleUID, []*Op{best.op}, "%s UID %d was taken but the final UIDNEXT is %d", mb, best.max, fm.UIDNext)
		}
	}
	for _, a := range assigned {
		p := pre[a.mb]
		k := sort.Search(len(p.times), func(i int) bool { return !p.times[i].Before(a.op.Invoke) })
		if k == 0 {
			continue
		}
		before := p.max[k-1]
		c.cov["UID assignments ordered"]++
		low := a.uids[0]
		for _, u := range a.uids {
			low = min(low, u)
		}
		if low <= before.max {
			c.fail(RuleUID, []*Op{before.op, a.op}, "%s UID %d was assigned after UID %d was already taken (by an op that completed before)", a.mb, low, before.max)
		}
	}
}

// flagKey is a canonical form of a flag set (flags are case-insensitive).
func flagKey(flags []string) string {
	s := make([]string, 0, len(flags))
	for _, f := range flags {
		s = append(s, strings.ToLower(f))
	}
	sort.Strings(s)
	s = compactStrings(s)
	return strings.Join(s, " ")
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func hasFlag(flags []string, f string) bool {
	for _, g := range flags {
		if strings.EqualFold(g, f) {
			return true
		}
	}
	return false
}

func containsUID(uids []uint32, u uint32) bool {
	for _, v := range uids {
		if v == u {
			return true
		}
	}
	return false
}

// answerFor is what an acknowledged STORE answered for uid (nil: nothing).
func answerFor(op *Op, uid uint32) []string {
	for _, m := range op.Msgs {
		if m.UID == uid {
			if m.Flags == nil {
				return []string{}
			}
			return m.Flags
		}
	}
	return nil
}

// mayClear: the STORE may have taken flag away.
func mayClear(op *Op, flag string) bool {
	switch op.Mode {
	case StoreRemove:
		return hasFlag(op.Flags, flag)
	case StoreReplace:
		return !hasFlag(op.Flags, flag)
	}
	return false
}

func (cov Coverage) String() string {
	var keys []string
	for k := range cov {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", cov[k], k))
	}
	return strings.Join(parts, ", ")
}
