package history

import (
	"sort"
	"time"
)

// MODSEQs are known only from storage snapshots (LIST ops and the final
// index): IMAP here has no CONDSTORE. A snapshot is one etcd revision read
// linearizably, so a snapshot completed before another was invoked was read
// at an earlier or equal revision. The rules below follow from "every
// change takes HIGHESTMODSEQ+1 for what it changes" and nothing else.

// obs is one snapshot's view of one message (or, with flags "", of a
// mailbox: its HIGHESTMODSEQ).
type obs struct {
	invoke, complete time.Time
	flags            string
	modseq, hms      uint64
	op               *Op // nil: the final state
}

// series is every observation of one message, searchable by time.
type series struct {
	byComplete []obs
	prefMax    []obs // the observation of highest modseq among byComplete[:k+1]
	byInvoke   []obs
	sufMin     []obs // the observation of lowest modseq among byInvoke[k:]
	// groups: per flag set, observations by completion with the running
	// highest HIGHESTMODSEQ.
	groups map[string]*hmsPrefix
}

type hmsPrefix struct {
	times []time.Time
	best  []obs
}

func (p *hmsPrefix) add(o obs) {
	t := o.complete
	if n := len(p.best); n > 0 && p.best[n-1].hms >= o.hms {
		o = p.best[n-1]
	}
	p.times = append(p.times, t)
	p.best = append(p.best, o)
}

// before returns the observation of highest HIGHESTMODSEQ completed before t.
func (p *hmsPrefix) before(t time.Time) (obs, bool) {
	k := sort.Search(len(p.times), func(i int) bool { return !p.times[i].Before(t) })
	if k == 0 {
		return obs{}, false
	}
	return p.best[k-1], true
}

func newSeries(all []obs) *series {
	s := &series{groups: map[string]*hmsPrefix{}}
	s.byComplete = append([]obs(nil), all...)
	sort.Slice(s.byComplete, func(i, j int) bool { return s.byComplete[i].complete.Before(s.byComplete[j].complete) })
	for k, o := range s.byComplete {
		if k > 0 && s.prefMax[k-1].modseq > o.modseq {
			s.prefMax = append(s.prefMax, s.prefMax[k-1])
		} else {
			s.prefMax = append(s.prefMax, o)
		}
		g := s.groups[o.flags]
		if g == nil {
			g = &hmsPrefix{}
			s.groups[o.flags] = g
		}
		g.add(o)
	}
	s.byInvoke = append([]obs(nil), all...)
	sort.Slice(s.byInvoke, func(i, j int) bool { return s.byInvoke[i].invoke.Before(s.byInvoke[j].invoke) })
	s.sufMin = make([]obs, len(s.byInvoke))
	for k := len(s.byInvoke) - 1; k >= 0; k-- {
		s.sufMin[k] = s.byInvoke[k]
		if k+1 < len(s.byInvoke) && s.sufMin[k+1].modseq < s.byInvoke[k].modseq {
			s.sufMin[k] = s.sufMin[k+1]
		}
	}
	return s
}

// maxBefore is the observation of highest modseq completed before t.
func (s *series) maxBefore(t time.Time) (obs, bool) {
	k := sort.Search(len(s.byComplete), func(i int) bool { return !s.byComplete[i].complete.Before(t) })
	if k == 0 {
		return obs{}, false
	}
	return s.prefMax[k-1], true
}

// otherFlagsBefore is the observation of highest HIGHESTMODSEQ completed
// before t that showed flags other than flags.
func (s *series) otherFlagsBefore(t time.Time, flags string) (obs, bool) {
	var best obs
	found := false
	for k, g := range s.groups {
		if k == flags {
			continue
		}
		if o, ok := g.before(t); ok && (!found || o.hms > best.hms) {
			best, found = o, true
		}
	}
	return best, found
}

// minAfter is the observation of lowest modseq invoked after t.
func (s *series) minAfter(t time.Time) (obs, bool) {
	k := sort.Search(len(s.byInvoke), func(i int) bool { return s.byInvoke[i].invoke.After(t) })
	if k == len(s.byInvoke) {
		return obs{}, false
	}
	return s.sufMin[k], true
}

// checkModSeqs (4): MODSEQ strictly increases with every change.
func (c *checker) checkModSeqs() {
	snaps := map[mbox]*hmsPrefix{}
	perInst := map[inst][]obs{}
	stateAt := map[inst]map[uint64]obs{}
	see := func(i inst, o obs) {
		perInst[i] = append(perInst[i], o)
		if stateAt[i] == nil {
			stateAt[i] = map[uint64]obs{}
		}
		if prev, ok := stateAt[i][o.modseq]; !ok {
			stateAt[i][o.modseq] = o
		} else if prev.flags != o.flags && c.once("state "+i.String()) {
			c.fail(RuleModSeq, []*Op{prev.op, o.op}, "%s has MODSEQ %d with flags (%s) and with flags (%s): one MODSEQ, two states", i, o.modseq, prev.flags, o.flags)
		}
	}
	type snap struct {
		mb mbox
		o  obs
	}
	var all []snap
	for _, op := range c.h.Ops {
		if op.Kind != List || op.Outcome != OK {
			continue
		}
		mb := srcBox(op)
		all = append(all, snap{mb, obs{invoke: op.Invoke, complete: op.Complete, hms: op.HighestModSeq, op: op}})
		for _, m := range op.Msgs {
			i := inst{mb, m.UID}
			if m.ModSeq == 0 || m.ModSeq > op.HighestModSeq {
				c.fail(RuleModSeq, []*Op{op}, "a snapshot shows %s with MODSEQ %d above HIGHESTMODSEQ %d", i, m.ModSeq, op.HighestModSeq)
			}
			see(i, obs{op.Invoke, op.Complete, flagKey(m.Flags), m.ModSeq, op.HighestModSeq, op})
		}
	}
	for _, fm := range c.f.Mailboxes {
		if fm.HighestModSeq == 0 {
			continue
		}
		mb := mbox{fm.Account, fm.Name}
		at := c.f.ReadAt
		all = append(all, snap{mb, obs{invoke: at, complete: at, hms: fm.HighestModSeq}})
		for _, m := range fm.Index {
			see(inst{mb, m.UID}, obs{at, at, flagKey(m.Flags), m.ModSeq, fm.HighestModSeq, nil})
		}
	}
	// HIGHESTMODSEQ never goes down.
	sort.Slice(all, func(i, j int) bool { return all[i].o.complete.Before(all[j].o.complete) })
	for _, s := range all {
		if p, ok := snaps[s.mb]; ok {
			if prev, ok := p.before(s.o.invoke); ok && prev.hms > s.o.hms {
				c.fail(RuleModSeq, []*Op{prev.op, s.o.op}, "HIGHESTMODSEQ of %s went down from %d to %d", s.mb, prev.hms, s.o.hms)
			}
		} else {
			snaps[s.mb] = &hmsPrefix{}
		}
		snaps[s.mb].add(s.o)
	}
	// Per message: its MODSEQ never goes down, and a change of its flags
	// since a snapshot takes a MODSEQ above that snapshot's HIGHESTMODSEQ.
	series := map[inst]*series{}
	for i, os := range perInst {
		s := newSeries(os)
		series[i] = s
		c.cov["MODSEQ observations"] += len(os)
		for _, q := range os {
			if p, ok := s.maxBefore(q.invoke); ok && p.modseq > q.modseq {
				c.fail(RuleModSeq, []*Op{p.op, q.op}, "MODSEQ of %s went down from %d to %d", i, p.modseq, q.modseq)
			}
			if p, ok := s.otherFlagsBefore(q.invoke, q.flags); ok && q.modseq <= p.hms {
				c.fail(RuleModSeq, []*Op{p.op, q.op}, "flags of %s changed from (%s) to (%s) but its MODSEQ %d is not above the earlier HIGHESTMODSEQ %d", i, p.flags, q.flags, q.modseq, p.hms)
			}
		}
	}
	// A new message's MODSEQ is above the HIGHESTMODSEQ of every snapshot
	// completed before it was created.
	lowest := func(i inst) (obs, bool) {
		s, ok := series[i]
		if !ok {
			return obs{}, false
		}
		return s.minAfter(time.Time{})
	}
	created := func(op *Op, i inst) {
		p, ok := snaps[i.mb]
		if !ok {
			return
		}
		before, ok := p.before(op.Invoke)
		if !ok {
			return
		}
		o, ok := lowest(i)
		if !ok {
			return
		}
		c.cov["new messages' MODSEQ checked"]++
		if o.modseq <= before.hms {
			c.fail(RuleModSeq, []*Op{before.op, op, o.op}, "%s was created after HIGHESTMODSEQ was %d, yet has MODSEQ %d", i, before.hms, o.modseq)
		}
	}
	for _, op := range c.h.Ops {
		switch {
		case op.Kind == Append && op.Outcome == OK && op.UID != 0:
			created(op, inst{srcBox(op), op.UID})
		case op.Kind == Deliver:
			for _, r := range op.Recipients {
				if r.Outcome == OK && r.UID != 0 {
					created(op, inst{mbox{r.Account, Inbox}, r.UID})
				}
			}
		case (op.Kind == Copy || op.Kind == Move) && op.Outcome == OK:
			for _, u := range op.DestUIDs {
				created(op, inst{destBox(op), u})
			}
		case op.Kind == Store && op.Outcome == OK:
			// An acknowledged STORE answered flags F for a message: if a
			// snapshot before it showed other flags, the message changed
			// since, and every later snapshot shows a MODSEQ above that
			// snapshot's HIGHESTMODSEQ.
			for _, m := range op.Msgs {
				i := inst{srcBox(op), m.UID}
				s, ok := series[i]
				if _, there := c.present[i]; !ok || !there {
					continue // the answer may not be the STORE's own (see checkFlags)
				}
				p, ok := s.otherFlagsBefore(op.Invoke, flagKey(m.Flags))
				if !ok {
					continue
				}
				q, ok := s.minAfter(op.Complete)
				if !ok {
					continue
				}
				c.cov["STOREs' MODSEQ checked"]++
				if q.modseq <= p.hms {
					c.fail(RuleModSeq, []*Op{p.op, op, q.op}, "%s changed from (%s) to (%s) by or before an acknowledged STORE, but a later snapshot shows MODSEQ %d, not above the earlier HIGHESTMODSEQ %d", i, p.flags, flagKey(m.Flags), q.modseq, p.hms)
				}
			}
		}
	}
}
