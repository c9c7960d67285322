package history

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// builder makes hand-made histories: times are seconds from the start.
type builder struct {
	h   *History
	fin *Final
}

func newBuilder() *builder {
	h := &History{Seed: 1, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return &builder{h: h, fin: &Final{ReadAt: h.Start.Add(time.Hour)}}
}

func (b *builder) at(s float64) time.Time {
	return b.h.Start.Add(time.Duration(s * float64(time.Second)))
}

// op adds o, invoked at from and ended at to.
func (b *builder) op(from, to float64, outcome Outcome, o Op) *Op {
	o.ID = len(b.h.Ops) + 1
	o.Invoke, o.Complete, o.Outcome = b.at(from), b.at(to), outcome
	if o.Client == "" {
		o.Client = "c1"
	}
	if o.Account == "" && o.Kind != Deliver {
		o.Account = "a"
	}
	if o.Mailbox == "" && o.Kind != Deliver {
		o.Mailbox = Inbox
	}
	b.h.Ops = append(b.h.Ops, &o)
	return &o
}

// appendOK adds an acknowledged APPEND of token to a/mailbox.
func (b *builder) appendOK(from, to float64, mailbox, token string, uid, validity uint32, flags ...string) *Op {
	return b.op(from, to, OK, Op{Kind: Append, Mailbox: mailbox, Token: token, BodySum: "sum-" + token, Flags: flags, UID: uid, UIDValidity: validity})
}

// box adds a final mailbox of account a; IMAP shows what the index holds.
func (b *builder) box(name string, validity, next uint32, hms uint64, msgs ...Msg) *FinalMailbox {
	var imap []Msg
	for k := range msgs {
		if msgs[k].BodySum == "" {
			msgs[k].BodySum = "sum-" + msgs[k].Token
		}
		m := msgs[k]
		m.ModSeq = 0
		imap = append(imap, m)
	}
	b.fin.Mailboxes = append(b.fin.Mailboxes, FinalMailbox{Account: "a", Name: name, UIDValidity: validity, UIDNext: next, HighestModSeq: hms, IMAP: imap, Index: msgs})
	return &b.fin.Mailboxes[len(b.fin.Mailboxes)-1]
}

func msg(uid uint32, token string, modseq uint64, flags ...string) Msg {
	return Msg{UID: uid, Token: token, ModSeq: modseq, Flags: flags}
}

func (b *builder) check(t *testing.T) []Violation {
	t.Helper()
	vs, _ := Check(b.h, b.fin)
	for _, v := range vs {
		t.Log(b.h.Report(v))
	}
	return vs
}

// expect fails unless the history breaks rule (and only rule).
func (b *builder) expect(t *testing.T, rule string) {
	t.Helper()
	vs := b.check(t)
	if len(vs) == 0 {
		t.Fatalf("no violation; want %s", rule)
	}
	for _, v := range vs {
		if v.Rule != rule {
			t.Errorf("violation of %s; want only %s", v.Rule, rule)
		}
	}
}

func (b *builder) clean(t *testing.T) {
	t.Helper()
	if vs := b.check(t); len(vs) > 0 {
		t.Fatalf("%d violations in a correct history", len(vs))
	}
}

// A correct history touching every kind of op: the checker finds nothing.
func baseline() *builder {
	b := newBuilder()
	b.appendOK(0, 1, Inbox, "t1", 1, 7, `\Seen`)
	b.appendOK(1.5, 2, Inbox, "t2", 2, 7)
	b.op(2.5, 3, OK, Op{Kind: List, UIDValidity: 7, HighestModSeq: 2, UIDNext: 3, Msgs: []Msg{msg(1, "t1", 1, `\Seen`), msg(2, "t2", 2)}})
	b.op(3.5, 4, OK, Op{Kind: Store, Mode: StoreAdd, Flags: []string{`\Flagged`}, UIDs: []uint32{2}, Msgs: []Msg{{UID: 2, Flags: []string{`\Flagged`}}}})
	b.op(4.5, 5, OK, Op{Kind: Copy, Dest: "Archive", UIDs: []uint32{1, 2}, UIDValidity: 8, SrcUIDs: []uint32{1, 2}, DestUIDs: []uint32{1, 2}})
	b.op(5.5, 6, OK, Op{Kind: Fetch, Mailbox: "Archive", Client: "c2", UIDValidity: 8, Msgs: []Msg{{UID: 1, Token: "t1", Flags: []string{`\Seen`}}, {UID: 2, Token: "t2", Flags: []string{`\Flagged`}}}})
	b.op(6.5, 7, OK, Op{Kind: Store, Mode: StoreAdd, Flags: []string{`\Deleted`}, UIDs: []uint32{1}, Msgs: []Msg{{UID: 1, Flags: []string{`\Seen`, `\Deleted`}}}})
	b.op(7.5, 8, OK, Op{Kind: Expunge, UIDs: []uint32{1}})
	b.op(8.5, 9, OK, Op{Kind: Deliver, Token: "t3", BodySum: "sum-t3", Recipients: []Recipient{{Account: "a", Outcome: OK, UID: 3}}})
	b.op(9.5, 10, OK, Op{Kind: POP3, UIDs: []uint32{3}, UIDValidity: 7, Msgs: []Msg{{UID: 2, Token: "t2", BodySum: "sum-t2"}}})
	b.op(10.5, 11, OK, Op{Kind: Move, Mailbox: "Archive", Dest: "Trash", UIDs: []uint32{2}, UIDValidity: 9, SrcUIDs: []uint32{2}, DestUIDs: []uint32{1}})
	b.op(11.5, 12, OK, Op{Kind: List, UIDValidity: 7, HighestModSeq: 7, UIDNext: 4, Msgs: []Msg{msg(2, "t2", 3, `\Flagged`)}})
	b.box(Inbox, 7, 4, 7, msg(2, "t2", 3, `\Flagged`))
	b.box("Archive", 8, 3, 2, msg(1, "t1", 1, `\Seen`))
	b.box("Trash", 9, 2, 1, msg(1, "t2", 1, `\Flagged`))
	return b
}

func TestBaselineIsClean(t *testing.T) { baseline().clean(t) }

// (1) Nothing acknowledged is lost.
func TestLost(t *testing.T) {
	t.Run("acknowledged append gone", func(t *testing.T) {
		b := baseline()
		b.fin.Mailboxes[0].IMAP, b.fin.Mailboxes[0].Index = nil, nil
		b.expect(t, RuleLost)
	})
	t.Run("acknowledged delivery gone", func(t *testing.T) {
		b := newBuilder()
		b.op(0, 1, OK, Op{Kind: Deliver, Token: "t1", BodySum: "sum-t1", Recipients: []Recipient{{Account: "a", Outcome: OK, UID: 1}}})
		b.box(Inbox, 1, 2, 1)
		b.expect(t, RuleLost)
	})
	t.Run("failed expunge removed", func(t *testing.T) {
		b := baseline()
		b.h.Ops[7].Outcome = Failed // the UID EXPUNGE of INBOX UID 1
		b.expect(t, RuleLost)
	})
	t.Run("aborted POP3 session deleted", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 1, Inbox, "t1", 1, 1)
		b.op(2, 3, Failed, Op{Kind: POP3, UIDs: []uint32{1}, Err: "aborted before QUIT"})
		b.box(Inbox, 1, 2, 2)
		b.expect(t, RuleLost)
	})
	t.Run("unknown expunge may have removed", func(t *testing.T) {
		b := baseline()
		b.h.Ops[7].Outcome = Unknown
		b.clean(t)
	})
}

// (2) No duplicates, no phantoms.
func TestDuplicate(t *testing.T) {
	t.Run("twice", func(t *testing.T) {
		b := baseline()
		in := &b.fin.Mailboxes[0]
		m := msg(4, "t2", 7, `\Flagged`)
		m.BodySum = "sum-t2"
		in.Index = append(in.Index, m)
		m.ModSeq = 0
		in.IMAP = append(in.IMAP, m)
		in.UIDNext = 5
		b.expect(t, RuleDuplicate)
	})
	t.Run("failed append took effect", func(t *testing.T) {
		b := newBuilder()
		b.op(0, 1, Failed, Op{Kind: Append, Token: "t1", BodySum: "sum-t1", Err: "NO [OVERQUOTA]"})
		b.box(Inbox, 1, 2, 1, msg(1, "t1", 1))
		b.expect(t, RuleDuplicate)
	})
	t.Run("failed copy took effect", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 1, Inbox, "t1", 1, 1)
		b.op(2, 3, Failed, Op{Kind: Copy, Dest: "Archive", UIDs: []uint32{1}, Err: "NO [TRYCREATE]"})
		b.box(Inbox, 1, 2, 1, msg(1, "t1", 1))
		b.box("Archive", 2, 2, 1, msg(1, "t1", 1))
		b.expect(t, RuleDuplicate)
	})
	t.Run("unknown append may have taken effect", func(t *testing.T) {
		b := newBuilder()
		b.op(0, 1, Unknown, Op{Kind: Append, Token: "t1", BodySum: "sum-t1"})
		b.box(Inbox, 1, 2, 1, msg(1, "t1", 1))
		b.clean(t)
	})
}

// (3) UIDs unique and ascending, UIDVALIDITY constant.
func TestUID(t *testing.T) {
	t.Run("descending", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 1, Inbox, "t1", 5, 1)
		b.appendOK(2, 3, Inbox, "t2", 3, 1)
		b.box(Inbox, 1, 6, 2, msg(3, "t2", 2), msg(5, "t1", 1))
		b.expect(t, RuleUID)
	})
	t.Run("below a snapshot's UIDNEXT", func(t *testing.T) {
		b := newBuilder()
		b.op(0, 1, OK, Op{Kind: List, UIDValidity: 1, UIDNext: 9, HighestModSeq: 3})
		b.appendOK(2, 3, Inbox, "t1", 8, 1)
		b.box(Inbox, 1, 10, 4, msg(8, "t1", 4))
		b.expect(t, RuleUID)
	})
	t.Run("concurrent appends may land in any order", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 3, Inbox, "t1", 2, 1)
		b.appendOK(1, 2, Inbox, "t2", 1, 1)
		b.box(Inbox, 1, 3, 2, msg(1, "t2", 1), msg(2, "t1", 2))
		b.clean(t)
	})
	t.Run("reused", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 1, Inbox, "t1", 1, 1)
		b.op(2, 3, OK, Op{Kind: Fetch, UIDValidity: 1, Msgs: []Msg{{UID: 1, Token: "t2"}}})
		b.op(1.5, 4, Unknown, Op{Kind: Append, Token: "t2", BodySum: "sum-t2"})
		b.box(Inbox, 1, 2, 1, msg(1, "t1", 1))
		b.expect(t, RuleUID)
	})
	// The storage bug seed 9087462234336436850 found: a MOVE raced an
	// EXPUNGE of its source, its transaction conflicted, the retry found
	// nothing left to move, and the MOVE answered the COPYUID of the
	// attempt that never committed; the next APPEND got the same UID.
	t.Run("stale COPYUID", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 1, "Archive", "t1", 312, 2)
		b.op(2, 2.1, OK, Op{Kind: Store, Client: "c2", Mailbox: "Archive", Mode: StoreAdd, Flags: []string{`\Deleted`}, UIDs: []uint32{312}, Msgs: []Msg{{UID: 312, Flags: []string{`\Deleted`}}}})
		b.op(2.2, 2.5, OK, Op{Kind: Expunge, Client: "c2", Mailbox: "Archive", UIDs: []uint32{312}})
		b.op(2.1, 2.6, OK, Op{Kind: Move, Mailbox: "Archive", Dest: "Trash", UIDs: []uint32{312}, UIDValidity: 3, SrcUIDs: []uint32{312}, DestUIDs: []uint32{195}})
		b.appendOK(3, 4, "Trash", "t2", 195, 3)
		b.box("Archive", 2, 313, 3)
		b.box("Trash", 3, 196, 1, msg(195, "t2", 1))
		b.expect(t, RuleUID)
	})
	t.Run("uidvalidity changed", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 1, Inbox, "t1", 1, 1)
		b.box(Inbox, 2, 2, 1, msg(1, "t1", 1))
		b.expect(t, RuleUID)
	})
}

// (4) MODSEQ strictly increases with every change.
func TestModSeq(t *testing.T) {
	list := func(b *builder, from, to float64, hms uint64, msgs ...Msg) {
		b.op(from, to, OK, Op{Kind: List, UIDValidity: 1, UIDNext: 2, HighestModSeq: hms, Msgs: msgs})
	}
	t.Run("highestmodseq down", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 0.5, Inbox, "t1", 1, 1)
		list(b, 1, 2, 5, msg(1, "t1", 1))
		list(b, 3, 4, 4, msg(1, "t1", 1))
		b.box(Inbox, 1, 2, 5, msg(1, "t1", 1))
		b.expect(t, RuleModSeq)
	})
	t.Run("message modseq down", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 0.5, Inbox, "t1", 1, 1)
		b.op(0.6, 0.7, Unknown, Op{Kind: Store, Mode: StoreAdd, Flags: []string{"$x"}, UIDs: []uint32{1}})
		list(b, 1, 2, 3, msg(1, "t1", 3))
		list(b, 3, 4, 3, msg(1, "t1", 2))
		b.box(Inbox, 1, 2, 3, msg(1, "t1", 3))
		b.expect(t, RuleModSeq)
	})
	t.Run("flags changed without a new modseq", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 0.5, Inbox, "t1", 1, 1)
		b.op(0.6, 5, Unknown, Op{Kind: Store, Mode: StoreAdd, Flags: []string{`\Seen`}, UIDs: []uint32{1}})
		list(b, 1, 2, 5, msg(1, "t1", 2))
		list(b, 3, 4, 6, msg(1, "t1", 4, `\Seen`)) // 4 is not above 5
		b.box(Inbox, 1, 2, 6, msg(1, "t1", 4, `\Seen`))
		b.expect(t, RuleModSeq)
	})
	t.Run("new message below an earlier highestmodseq", func(t *testing.T) {
		b := newBuilder()
		b.op(0, 1, OK, Op{Kind: List, UIDValidity: 1, UIDNext: 1, HighestModSeq: 5})
		b.appendOK(2, 3, Inbox, "t1", 1, 1)
		b.box(Inbox, 1, 2, 5, msg(1, "t1", 4))
		b.expect(t, RuleModSeq)
	})
	t.Run("store without a new modseq", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 0.5, Inbox, "t1", 1, 1)
		list(b, 1, 2, 5, msg(1, "t1", 2))
		b.op(3, 4, OK, Op{Kind: Store, Mode: StoreAdd, Flags: []string{`\Seen`}, UIDs: []uint32{1}, Msgs: []Msg{{UID: 1, Flags: []string{`\Seen`}}}})
		b.box(Inbox, 1, 2, 5, msg(1, "t1", 5, `\Seen`))
		b.expect(t, RuleModSeq)
	})
}

// (5) Final flags are those of the last acknowledged STORE.
func TestFlags(t *testing.T) {
	store := func(b *builder, from, to float64, outcome Outcome, mode StoreMode, flags []string, answer ...string) {
		o := Op{Kind: Store, Mode: mode, Flags: flags, UIDs: []uint32{1}}
		if outcome == OK {
			o.Msgs = []Msg{{UID: 1, Flags: answer}}
		}
		b.op(from, to, outcome, o)
	}
	t.Run("not the last store", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 1, Inbox, "t1", 1, 1)
		store(b, 2, 3, OK, StoreAdd, []string{`\Seen`}, `\Seen`)
		store(b, 4, 5, OK, StoreAdd, []string{`\Flagged`}, `\Seen`, `\Flagged`)
		b.box(Inbox, 1, 2, 3, msg(1, "t1", 3, `\Seen`))
		b.expect(t, RuleFlags)
	})
	t.Run("overlapping stores: either may be last", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 1, Inbox, "t1", 1, 1)
		store(b, 2, 5, OK, StoreReplace, []string{`\Seen`}, `\Seen`)
		store(b, 3, 4, OK, StoreAdd, []string{`\Flagged`}, `\Seen`, `\Flagged`)
		b.box(Inbox, 1, 2, 3, msg(1, "t1", 3, `\Seen`))
		b.clean(t)
	})
	t.Run("an unknown store may have been last", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 1, Inbox, "t1", 1, 1)
		store(b, 2, 3, OK, StoreAdd, []string{`\Seen`}, `\Seen`)
		store(b, 4, 5, Unknown, StoreReplace, []string{`$x`})
		b.box(Inbox, 1, 2, 3, msg(1, "t1", 3, `$x`))
		b.clean(t)
	})
	t.Run("never stored", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 1, Inbox, "t1", 1, 1, `\Seen`)
		b.box(Inbox, 1, 2, 1, msg(1, "t1", 1))
		b.expect(t, RuleFlags)
	})
	t.Run("an expunged message's answer may be another session's update", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 1, Inbox, "t1", 1, 1, `\Seen`)
		b.op(2, 3, OK, Op{Kind: Expunge, Client: "c2", UIDs: []uint32{1}})
		store(b, 2, 3, OK, StoreAdd, []string{`$x`}, `\Seen`)
		b.box(Inbox, 1, 2, 2)
		b.clean(t)
	})
	t.Run("answer contradicts the store", func(t *testing.T) {
		b := newBuilder()
		b.appendOK(0, 1, Inbox, "t1", 1, 1, `\Seen`)
		store(b, 2, 3, OK, StoreRemove, []string{`\Seen`}, `\Seen`)
		b.box(Inbox, 1, 2, 2, msg(1, "t1", 2, `\Seen`))
		b.expect(t, RuleFlags)
	})
}

// (6) COPY and MOVE are all or nothing.
func TestAtomic(t *testing.T) {
	twoInInbox := func() *builder {
		b := newBuilder()
		b.appendOK(0, 1, Inbox, "t1", 1, 1)
		b.appendOK(0, 1, Inbox, "t2", 2, 1)
		return b
	}
	t.Run("observer saw part of a copy", func(t *testing.T) {
		b := twoInInbox()
		b.op(2, 3, OK, Op{Kind: Copy, Dest: "Archive", UIDs: []uint32{1, 2}, UIDValidity: 2, SrcUIDs: []uint32{1, 2}, DestUIDs: []uint32{1, 2}})
		b.op(2.5, 2.6, OK, Op{Kind: Fetch, Mailbox: "Archive", Client: "c2", UIDValidity: 2, Msgs: []Msg{{UID: 1, Token: "t1"}}})
		b.box(Inbox, 1, 3, 2, msg(1, "t1", 1), msg(2, "t2", 2))
		b.box("Archive", 2, 3, 1, msg(1, "t1", 1), msg(2, "t2", 1))
		b.expect(t, RuleAtomic)
	})
	t.Run("observer missed an expunged copy", func(t *testing.T) {
		b := twoInInbox()
		b.op(2, 3, OK, Op{Kind: Copy, Dest: "Archive", UIDs: []uint32{1, 2}, UIDValidity: 2, SrcUIDs: []uint32{1, 2}, DestUIDs: []uint32{1, 2}})
		b.op(3.5, 4, OK, Op{Kind: Expunge, Mailbox: "Archive", Client: "c3", UIDs: []uint32{2}})
		b.op(3.8, 4.2, OK, Op{Kind: Fetch, Mailbox: "Archive", Client: "c2", UIDValidity: 2, Msgs: []Msg{{UID: 1, Token: "t1"}}})
		b.box(Inbox, 1, 3, 2, msg(1, "t1", 1), msg(2, "t2", 2))
		b.box("Archive", 2, 3, 2, msg(1, "t1", 1))
		b.clean(t)
	})
	t.Run("acknowledged move left its source", func(t *testing.T) {
		b := twoInInbox()
		b.op(2, 3, OK, Op{Kind: Move, Dest: "Archive", UIDs: []uint32{1}, UIDValidity: 2, SrcUIDs: []uint32{1}, DestUIDs: []uint32{1}})
		b.box(Inbox, 1, 3, 2, msg(1, "t1", 1), msg(2, "t2", 2))
		b.box("Archive", 2, 2, 1, msg(1, "t1", 1))
		b.expect(t, RuleAtomic)
	})
	t.Run("acknowledged copy left one out", func(t *testing.T) {
		b := twoInInbox()
		b.op(2, 3, OK, Op{Kind: Copy, Dest: "Archive", UIDs: []uint32{1, 2}, UIDValidity: 2, SrcUIDs: []uint32{1}, DestUIDs: []uint32{1}})
		b.box(Inbox, 1, 3, 2, msg(1, "t1", 1), msg(2, "t2", 2))
		b.box("Archive", 2, 2, 1, msg(1, "t1", 1))
		b.expect(t, RuleAtomic)
	})
	t.Run("unknown copy half done", func(t *testing.T) {
		b := twoInInbox()
		b.op(2, 3, Unknown, Op{Kind: Copy, Dest: "Archive", UIDs: []uint32{1, 2}})
		b.box(Inbox, 1, 3, 2, msg(1, "t1", 1), msg(2, "t2", 2))
		b.box("Archive", 2, 2, 1, msg(1, "t1", 1))
		b.expect(t, RuleAtomic)
	})
	t.Run("unknown move half done", func(t *testing.T) {
		b := twoInInbox()
		b.op(2, 3, Unknown, Op{Kind: Move, Dest: "Archive", UIDs: []uint32{1}})
		b.box(Inbox, 1, 3, 2, msg(1, "t1", 1), msg(2, "t2", 2))
		b.box("Archive", 2, 2, 1, msg(1, "t1", 1))
		b.expect(t, RuleAtomic)
	})
	t.Run("unknown move that took effect", func(t *testing.T) {
		b := twoInInbox()
		b.op(2, 3, Unknown, Op{Kind: Move, Dest: "Archive", UIDs: []uint32{1, 2}})
		b.box(Inbox, 1, 3, 3)
		b.box("Archive", 2, 3, 1, msg(1, "t1", 1), msg(2, "t2", 1))
		b.clean(t)
	})
}

// (7) Bodies are readable and as sent.
func TestBody(t *testing.T) {
	t.Run("unreadable", func(t *testing.T) {
		b := baseline()
		b.fin.Mailboxes[0].Index[0].BodyErr = "NoSuchKey"
		b.fin.Mailboxes[0].Index[0].BodySum = ""
		b.expect(t, RuleBody)
	})
	t.Run("different", func(t *testing.T) {
		b := baseline()
		b.fin.Mailboxes[1].Index[0].BodySum = "sum-other"
		b.fin.Mailboxes[1].IMAP[0].BodySum = "sum-other"
		b.expect(t, RuleBody)
	})
	t.Run("POP3 RETR different", func(t *testing.T) {
		b := baseline()
		b.h.Ops[9].Msgs[0].BodySum = "sum-other"
		b.expect(t, RuleBody)
	})
}

func TestRemovals(t *testing.T) {
	t.Run("acknowledged expunge left a deleted message", func(t *testing.T) {
		b := baseline()
		in := &b.fin.Mailboxes[0]
		in.Index = append([]Msg{msg(1, "t1", 4, `\Seen`, `\Deleted`)}, in.Index...)
		in.Index[0].BodySum = "sum-t1"
		in.IMAP = append([]Msg{{UID: 1, Token: "t1", BodySum: "sum-t1", Flags: []string{`\Seen`, `\Deleted`}}}, in.IMAP...)
		b.expect(t, RuleExpunge)
	})
	t.Run("a racing store may have taken deleted away", func(t *testing.T) {
		b := baseline()
		b.op(7, 7.6, Unknown, Op{Kind: Store, Client: "c9", Mode: StoreRemove, Flags: []string{`\Deleted`}, UIDs: []uint32{1}})
		in := &b.fin.Mailboxes[0]
		in.Index = append([]Msg{msg(1, "t1", 6, `\Seen`)}, in.Index...)
		in.Index[0].BodySum = "sum-t1"
		in.IMAP = append([]Msg{{UID: 1, Token: "t1", BodySum: "sum-t1", Flags: []string{`\Seen`}}}, in.IMAP...)
		b.clean(t)
	})
	t.Run("acknowledged POP3 QUIT left a deleted message", func(t *testing.T) {
		b := baseline()
		in := &b.fin.Mailboxes[0]
		in.Index = append(in.Index, Msg{UID: 3, Token: "t3", ModSeq: 6, BodySum: "sum-t3"})
		in.IMAP = append(in.IMAP, Msg{UID: 3, Token: "t3", BodySum: "sum-t3"})
		b.expect(t, RuleExpunge)
	})
}

func TestIndexAndHistory(t *testing.T) {
	t.Run("IMAP shows what is not indexed", func(t *testing.T) {
		b := baseline()
		b.fin.Mailboxes[0].Index = nil
		b.expect(t, RuleIndex)
	})
	t.Run("pending op", func(t *testing.T) {
		b := baseline()
		b.op(20, 21, Pending, Op{Kind: Fetch})
		b.expect(t, RuleHistory)
	})
}

func TestTokens(t *testing.T) {
	tok := Token(42, 7)
	body := Body(tok, "a@example.test", rand.New(rand.NewPCG(1, 2)))
	if got := TokenFromBody(body); got != tok {
		t.Fatalf("TokenFromBody = %q, want %q", got, tok)
	}
	if got := TokenFromMessageID("<" + tok + "@history.mailfleet.test>"); got != tok {
		t.Fatalf("TokenFromMessageID = %q", got)
	}
	if TokenFromMessageID("<x@example.org>") != "" {
		t.Fatal("a foreign Message-ID has a token")
	}
	if !strings.Contains(string(body), "\r\n.a line") {
		t.Fatal("no dot line")
	}
}

// The default 90 s of workload injects every kind of fault, whatever the seed.
func TestSchedule(t *testing.T) {
	for seed := uint64(0); seed < 500; seed++ {
		plan := Schedule(seed, 90*time.Second, 2, 2, 3)
		kinds := map[FaultKind]bool{}
		for k, f := range plan {
			kinds[f.Kind] = true
			if k > 0 && f.At <= plan[k-1].At+plan[k-1].Down {
				t.Fatalf("seed %d: faults overlap: %v then %v", seed, plan[k-1], f)
			}
			if f.At+f.Down > 81*time.Second {
				t.Fatalf("seed %d: fault %v too late", seed, f)
			}
		}
		if len(kinds) != 4 {
			t.Fatalf("seed %d: 90 s of workload injects %v; want every kind", seed, plan)
		}
	}
}
