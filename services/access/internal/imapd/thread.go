package imapd

import (
	"cmp"
	"hash/maphash"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/mailfleet/mailfleet/pkg/envelope"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
)

// threadMsg is what THREAD keeps of one message.
type threadMsg struct {
	uid, seq uint32
	date     int64  // sent date (RFC 5256 section 2.2)
	subject  string // base subject, case-mapped and bounded
	isRe     bool   // the subject had a reply or forward marker
}

// Thread implements imapconn.Sorter (RFC 5256 section 3).
func (s *session) Thread(kind imapconn.NumKind, alg imap.ThreadAlgorithm, criteria *imap.SearchCriteria) ([]*imapconn.ThreadNode, error) {
	targets, _, err := s.matching(criteria)
	if err != nil {
		return nil, err
	}
	var msgs []threadMsg
	var roots []*container
	switch alg {
	case imap.ThreadOrderedSubject:
		msgs = make([]threadMsg, 0, len(targets))
		err = s.eachEnvelope(targets, func(t target, m *storagev1.Message) {
			msgs = append(msgs, newThreadMsg(t, m))
		})
		if err != nil {
			return nil, err
		}
		roots = orderedSubject(msgs)
	default:
		b := newThreader(len(targets))
		err = s.eachEnvelope(targets, func(t target, m *storagev1.Message) {
			env := m.Envelope
			if env == nil {
				env = &storagev1.Envelope{}
			}
			b.add(newThreadMsg(t, m), env.MessageId, env.References, env.InReplyTo)
		})
		if err != nil {
			return nil, err
		}
		msgs, roots = b.msgs, b.threads()
	}
	return threadNodes(roots, msgs, kind), nil
}

func newThreadMsg(t target, m *storagev1.Message) threadMsg {
	tm := threadMsg{uid: t.uid, seq: t.seq, date: sentDate(m)}
	if m.Envelope != nil {
		subj, isRe := baseSubject(m.Envelope.Subject)
		tm.subject, tm.isRe = bounded(casemap(subj)), isRe
	}
	return tm
}

// container is a node of a thread tree: a message (msg >= 0) or a dummy
// standing for a message known only from References (msg -1).
type container struct {
	msg      int32
	parent   *container
	children []*container
}

func (c *container) dummy() bool { return c.msg < 0 }

// orderedSubject threads by base subject (RFC 5256 section 3,
// ORDEREDSUBJECT): messages sorted by base subject then sent date; each
// run of one subject is a thread whose first message is the parent of the
// others; threads in the order of their first messages' dates.
func orderedSubject(msgs []threadMsg) []*container {
	order := make([]int32, len(msgs))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		x, y := &msgs[a], &msgs[b]
		if c := strings.Compare(x.subject, y.subject); c != 0 {
			return c
		}
		return compareDates(x, y)
	})
	var roots []*container
	for i := 0; i < len(order); {
		root := &container{msg: order[i]}
		j := i + 1
		for ; j < len(order) && msgs[order[j]].subject == msgs[order[i]].subject; j++ {
			root.children = append(root.children, &container{msg: order[j], parent: root})
		}
		roots = append(roots, root)
		i = j
	}
	slices.SortFunc(roots, func(a, b *container) int { return compareDates(&msgs[a.msg], &msgs[b.msg]) })
	return roots
}

// compareDates orders by sent date, then mailbox order.
func compareDates(x, y *threadMsg) int {
	if c := cmp.Compare(x.date, y.date); c != 0 {
		return c
	}
	return cmp.Compare(x.uid, y.uid)
}

// threader builds REFERENCES threads (RFC 5256 section 3) as messages
// stream in. Message IDs are kept as 64-bit hashes, not strings.
type threader struct {
	seed  maphash.Seed
	ids   map[uint64]*container
	all   []*container
	msgs  []threadMsg
	links []*container // scratch: one message's References chain
}

func newThreader(n int) *threader {
	return &threader{seed: maphash.MakeSeed(), ids: make(map[uint64]*container, n), msgs: make([]threadMsg, 0, n)}
}

// get returns the container of a message ID, made (a dummy) if new.
func (b *threader) get(id string) *container {
	h := maphash.String(b.seed, id)
	c := b.ids[h]
	if c == nil {
		c = &container{msg: -1}
		b.ids[h] = c
		b.all = append(b.all, c)
	}
	return c
}

// add is step 1 for one message: its container (A), the links between its
// References (B), and its parent, the last of them (C).
func (b *threader) add(m threadMsg, messageID, references, inReplyTo string) {
	idx := int32(len(b.msgs))
	b.msgs = append(b.msgs, m)
	var c *container
	if ids := envelope.MessageIDs(messageID); len(ids) > 0 {
		if c = b.get(ids[0]); !c.dummy() {
			c = nil // a duplicate Message-ID: this message gets a unique one
		}
	}
	if c == nil {
		c = &container{msg: -1}
		b.all = append(b.all, c)
	}
	c.msg = idx

	refs := envelope.MessageIDs(references)
	if len(refs) == 0 {
		// No usable References: the first message ID of In-Reply-To.
		if irt := envelope.MessageIDs(inReplyTo); len(irt) > 0 {
			refs = irt[:1]
		}
	}
	b.links = b.links[:0]
	for _, id := range refs {
		b.links = append(b.links, b.get(id))
	}
	for i := 1; i < len(b.links); i++ {
		parent, child := b.links[i-1], b.links[i]
		if child.parent == nil && parent != child && !descends(parent, child) {
			link(parent, child)
		}
	}
	// C: the last reference is the parent, replacing one presumed before.
	var parent *container
	if n := len(b.links); n > 0 {
		parent = b.links[n-1]
	}
	if parent != nil && (parent == c || descends(parent, c)) {
		parent = nil // a loop
	}
	if c.parent != parent {
		if c.parent != nil {
			unlink(c)
		}
		if parent != nil {
			link(parent, c)
		}
	}
}

// descends reports whether c is a descendant of (or is) a.
func descends(c, a *container) bool {
	for ; c != nil; c = c.parent {
		if c == a {
			return true
		}
	}
	return false
}

func link(parent, child *container) {
	child.parent = parent
	parent.children = append(parent.children, child)
}

func unlink(c *container) {
	p := c.parent
	if i := slices.Index(p.children, c); i >= 0 {
		p.children = slices.Delete(p.children, i, i+1)
	}
	c.parent = nil
}

// threads runs steps 2 to 6: the root set, pruned, grouped by subject and
// sorted.
func (b *threader) threads() []*container {
	var roots []*container
	for _, c := range b.all {
		if c.parent == nil {
			roots = append(roots, c)
		}
	}
	b.ids, b.all = nil, nil // step 3
	roots = prune(roots, true)
	roots = b.groupBySubject(roots)
	sortThreads(roots, b.msgs)
	return roots
}

// prune is step 4: dummies without children go, dummies with children give
// way to them (at the root only when there is a single child).
func prune(list []*container, root bool) []*container {
	out := list[:0:0]
	for _, c := range list {
		c.children = prune(c.children, false)
		if !c.dummy() {
			out = append(out, c)
			continue
		}
		switch {
		case len(c.children) == 0:
		case root && len(c.children) > 1:
			out = append(out, c)
		default:
			for _, ch := range c.children {
				ch.parent = c.parent
			}
			out = append(out, c.children...)
		}
	}
	return out
}

// subjectOf is a thread's subject: its root's, or a dummy's first child's.
func (b *threader) subjectOf(c *container) *threadMsg {
	if c.dummy() {
		if len(c.children) == 0 {
			return nil
		}
		c = c.children[0]
		if c.dummy() {
			return nil
		}
	}
	return &b.msgs[c.msg]
}

// groupBySubject is step 5: roots whose threads have the same base subject
// are merged.
func (b *threader) groupBySubject(roots []*container) []*container {
	table := map[string]*container{}
	for _, c := range roots {
		m := b.subjectOf(c)
		if m == nil || m.subject == "" {
			continue
		}
		old := table[m.subject]
		if old == nil || !old.dummy() && (c.dummy() || b.msgs[old.msg].isRe && !m.isRe) {
			table[m.subject] = c
		}
	}
	replaced := map[*container]*container{} // a root and the dummy in its place
	for _, c := range roots {
		m := b.subjectOf(c)
		if m == nil || m.subject == "" || c.parent != nil {
			continue // no subject, or merged already (under a new dummy)
		}
		t := table[m.subject]
		switch {
		case t == c:
		case t.dummy() && c.dummy():
			for _, ch := range c.children {
				link(t, ch)
			}
			c.children = nil
			replaced[c] = nil
		case t.dummy():
			link(t, c)
		case !c.dummy() && m.isRe && !b.msgs[t.msg].isRe:
			link(t, c)
		default:
			d := &container{msg: -1}
			replaced[t] = d
			link(d, t)
			link(d, c)
			table[m.subject] = d
		}
	}
	out := roots[:0:0]
	for _, c := range roots {
		if d, ok := replaced[c]; ok {
			if d != nil {
				out = append(out, d)
			}
			continue
		}
		if c.parent == nil {
			out = append(out, c)
		}
	}
	return out
}

// sortThreads is step 6: siblings by sent date (a dummy by its first
// child's), then mailbox order, the deepest first.
func sortThreads(list []*container, msgs []threadMsg) {
	for _, c := range list {
		sortThreads(c.children, msgs)
	}
	first := func(c *container) *threadMsg {
		for c.dummy() && len(c.children) > 0 {
			c = c.children[0]
		}
		if c.dummy() {
			return &threadMsg{}
		}
		return &msgs[c.msg]
	}
	slices.SortStableFunc(list, func(a, b *container) int { return compareDates(first(a), first(b)) })
}

// threadNodes turns the trees into the connection's form.
func threadNodes(list []*container, msgs []threadMsg, kind imapconn.NumKind) []*imapconn.ThreadNode {
	out := make([]*imapconn.ThreadNode, len(list))
	for i, c := range list {
		n := &imapconn.ThreadNode{}
		if !c.dummy() {
			n.Num = msgs[c.msg].seq
			if kind == imapconn.NumKindUID {
				n.Num = msgs[c.msg].uid
			}
		}
		n.Children = threadNodes(c.children, msgs, kind)
		out[i] = n
	}
	return out
}
