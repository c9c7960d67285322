package history

// checkFlags (5): the final flags of a message are those the last
// acknowledged STORE answered. Which STORE is last is known only up to
// concurrency: a STORE followed (in real time) by another acknowledged one
// cannot be the last to commit; any of the others can. So the final flags
// must equal the answer of one of those. A STORE that may have taken
// effect without an answer (Unknown) makes the final flags unknowable: such
// messages are skipped. With no STORE at all, a message keeps the flags it
// was created with (APPEND's, none for a delivery, the source's for a copy
// whose source was never STOREd).
//
// Every STORE answer must also reflect its STORE (+FLAGS added, -FLAGS
// removed, FLAGS replaced), and must name every message of its set that
// existed throughout (present at the end: UIDs never come back).
//
// Only answers for messages present at the end are the STORE's own for
// sure: the server answers for a message it changed during the command and
// flushes other sessions' updates after it, and the client library files
// the first FETCH of each UID under the pending STORE. For a message that
// was expunged meanwhile the server has nothing to say, and a flag update
// of another session flushed after the command would be taken for its
// answer.
func (c *checker) checkFlags() {
	type creation struct {
		op  *Op
		src *inst
	}
	created := map[inst]creation{}
	for _, op := range c.h.Ops {
		switch {
		case op.Kind == Append && op.Outcome == OK && op.UID != 0:
			created[inst{srcBox(op), op.UID}] = creation{op: op}
		case op.Kind == Deliver:
			for _, r := range op.Recipients {
				if r.Outcome == OK && r.UID != 0 {
					created[inst{mbox{r.Account, Inbox}, r.UID}] = creation{op: op}
				}
			}
		case (op.Kind == Copy || op.Kind == Move) && op.Outcome == OK && len(op.SrcUIDs) == len(op.DestUIDs):
			for k, u := range op.DestUIDs {
				s := inst{srcBox(op), op.SrcUIDs[k]}
				created[inst{destBox(op), u}] = creation{op: op, src: &s}
			}
		}
	}
	var initial func(i inst, depth int) ([]string, *Op, bool)
	initial = func(i inst, depth int) ([]string, *Op, bool) {
		cr, ok := created[i]
		if !ok || depth > 50 {
			return nil, nil, false
		}
		switch {
		case cr.op.Kind == Append:
			return cr.op.Flags, cr.op, true
		case cr.op.Kind == Deliver:
			return nil, cr.op, true
		case len(c.stores[*cr.src]) > 0:
			return nil, nil, false // its flags when copied are not known
		}
		f, _, ok := initial(*cr.src, depth+1)
		return f, cr.op, ok
	}
	for _, op := range c.h.Ops {
		if op.Kind != Store || op.Outcome != OK {
			continue
		}
		for _, m := range op.Msgs {
			if _, there := c.present[inst{srcBox(op), m.UID}]; !there {
				continue
			}
			ok := true
			for _, f := range op.Flags {
				switch op.Mode {
				case StoreAdd:
					ok = ok && hasFlag(m.Flags, f)
				case StoreRemove:
					ok = ok && !hasFlag(m.Flags, f)
				}
			}
			if op.Mode == StoreReplace {
				ok = flagKey(m.Flags) == flagKey(op.Flags)
			}
			if !ok {
				c.fail(RuleFlags, []*Op{op}, "STORE %s%v answered flags %v for UID %d", op.Mode, op.Flags, m.Flags, m.UID)
			}
		}
	}
	for i, m := range c.present {
		final := flagKey(m.Flags)
		var answered []*Op
		unknown := false
		for _, s := range c.stores[i] {
			if s.Outcome == Unknown {
				unknown = true
				continue
			}
			if answerFor(s, i.uid) == nil {
				c.fail(RuleFlags, []*Op{s}, "acknowledged STORE gave no answer for %s, which existed throughout", i)
				unknown = true
				continue
			}
			answered = append(answered, s)
		}
		if unknown {
			continue
		}
		if len(answered) == 0 {
			want, op, ok := initial(i, 0)
			if ok {
				c.cov["final flags decided"]++
			}
			if ok && flagKey(want) != final {
				c.fail(RuleFlags, []*Op{op}, "%s has flags (%s), but nothing STOREd it since it was created with (%s)", i, final, flagKey(want))
			}
			continue
		}
		c.cov["final flags decided"]++
		var candidates []*Op
		match := false
		for _, s := range answered {
			last := true
			for _, u := range answered {
				if u != s && u.Invoke.After(s.Complete) {
					last = false
					break
				}
			}
			if last {
				candidates = append(candidates, s)
				match = match || flagKey(answerFor(s, i.uid)) == final
			}
		}
		if !match {
			c.fail(RuleFlags, candidates, "%s ends with flags (%s), which no possibly-last acknowledged STORE answered", i, final)
		}
	}
}
