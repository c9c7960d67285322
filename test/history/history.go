// Package history records what clients asked a Mailfleet cluster and what it
// answered while faults were injected, and checks that record against the
// invariants of DESIGN.md, in the spirit of etcd's robustness tests and
// Jepsen: the workload runs against the real cluster, every request and its
// answer become an Op, and Check proves the invariants on the history and
// the final state afterwards with pure functions.
//
// Implementation notes:
//   - An Op's outcome is OK (answered: the answer is in the Op), Failed (a
//     definite refusal: nothing happened) or Unknown (no answer, or an
//     ambiguous one such as NO [UNAVAILABLE]: it may or may not have
//     happened, at any time after Invoke). Every rule of Check holds for
//     every way the Unknown ops could have turned out, so that a violation
//     is a bug of the system, never an unlucky timing.
//   - Real-time order is the only order the checker relies on: an OK op that
//     completed before another was invoked happened before it. Times come
//     from one process (the test), so they compare.
//   - A message instance is a mailbox and a UID; a message's identity is the
//     token in its Message-ID, unique per APPEND or delivery, so that copies
//     share it and the final state can be matched to the history.
package history

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Kind is what an Op did.
type Kind string

const (
	// Deliver is a storage.v1 Deliver to the INBOX of one or more accounts.
	Deliver Kind = "DELIVER"
	// Append is an IMAP APPEND (answered with APPENDUID).
	Append Kind = "APPEND"
	// Copy is an IMAP UID COPY (answered with COPYUID).
	Copy Kind = "COPY"
	// Move is an IMAP UID MOVE (answered with COPYUID).
	Move Kind = "MOVE"
	// Store is an IMAP UID STORE (answered with the flags after it).
	Store Kind = "STORE"
	// Expunge is an IMAP UID EXPUNGE.
	Expunge Kind = "EXPUNGE"
	// Fetch is an IMAP UID FETCH 1:* (UID FLAGS ENVELOPE) of the selected
	// mailbox, sometimes with BODY.PEEK[] of a few messages: one session's
	// view of the mailbox, which may lag behind other sessions' changes.
	Fetch Kind = "FETCH"
	// Read is an IMAP UID FETCH (UID BODY.PEEK[]) of a few messages of the
	// selected mailbox: their bodies, not a view.
	Read Kind = "READ"
	// List is a storage.v1 ListMessages of a whole mailbox at one etcd
	// revision: a linearizable snapshot with modseqs and HIGHESTMODSEQ.
	List Kind = "LIST"
	// POP3 is one POP3 session: UIDL, RETR, DELE and (unless aborted) QUIT.
	POP3 Kind = "POP3"
)

// Outcome is how an Op ended.
type Outcome int

const (
	// Pending: the op never ended (a driver bug; the checker reports it).
	Pending Outcome = iota
	// OK: the server answered and the answer is recorded.
	OK
	// Failed: a definite refusal (NO, BAD, -ERR before the change, a POP3
	// session that never sent QUIT): nothing happened.
	Failed
	// Unknown: no answer or an ambiguous one: it may have happened or not.
	Unknown
)

func (o Outcome) String() string {
	return [...]string{"PENDING", "OK", "FAILED", "UNKNOWN"}[o]
}

// StoreMode is the operation of a STORE.
type StoreMode string

const (
	StoreAdd     StoreMode = "+FLAGS"
	StoreRemove  StoreMode = "-FLAGS"
	StoreReplace StoreMode = "FLAGS"
)

// Msg is one message as an answer or the final state shows it.
type Msg struct {
	UID   uint32
	Flags []string
	// ModSeq is 0 when not known (IMAP answers carry none: only the
	// storage API's listings do).
	ModSeq uint64
	// Token is the message's identity ("" when not known).
	Token string
	// BodySum is the sha256 (hex) of the body read ("" when not read).
	BodySum string
	// BodyErr says why reading the body failed.
	BodyErr string
}

// Recipient is one recipient of a Deliver and its answer.
type Recipient struct {
	Account          string
	Outcome          Outcome
	UIDValidity, UID uint32
}

// Op is one request and its answer.
type Op struct {
	ID       int
	Client   string
	Kind     Kind
	Account  string
	Mailbox  string // the selected mailbox, or APPEND's target
	Dest     string // COPY and MOVE
	Invoke   time.Time
	Complete time.Time // the answer, or when the client gave up
	Outcome  Outcome
	Err      string

	// Requests.
	Token      string      // APPEND, DELIVER: the message's token
	BodySum    string      // APPEND, DELIVER: sha256 (hex) of the body sent
	Flags      []string    // APPEND: initial flags; STORE: the flags
	Mode       StoreMode   // STORE
	UIDs       []uint32    // COPY, MOVE, STORE, EXPUNGE: the UID set; POP3: the UIDs given DELE
	Recipients []Recipient // DELIVER, with their answers

	// Answers.
	UIDValidity       uint32   // APPEND, COPY and MOVE (destination), LIST, POP3
	UID               uint32   // APPEND (APPENDUID)
	SrcUIDs, DestUIDs []uint32 // COPY, MOVE (COPYUID)
	// Msgs: STORE: the flags after it, per message; FETCH, LIST: the view
	// or snapshot; READ: the bodies read; POP3: the messages retrieved (UID
	// from UIDL).
	Msgs          []Msg
	HighestModSeq uint64 // LIST
	UIDNext       uint32 // LIST
}

// Fault is one injected fault.
type Fault struct {
	What       string // "kill -9 storage-1", "stop etcd m2", …
	Start, End time.Time
	Err        string // restarting failed
}

// History is the record of a run. Begin and End are safe for concurrent use;
// the checker reads the history after every client stopped.
type History struct {
	Seed  uint64
	Start time.Time

	mu     sync.Mutex
	Ops    []*Op
	Faults []Fault
}

// New starts a history.
func New(seed uint64) *History { return &History{Seed: seed, Start: time.Now()} }

// Begin records op as invoked now and returns it.
func (h *History) Begin(op *Op) *Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.ID = len(h.Ops) + 1
	op.Invoke = time.Now()
	h.Ops = append(h.Ops, op)
	return op
}

// End records how op ended.
func (h *History) End(op *Op, outcome Outcome, err error) {
	op.Complete = time.Now()
	op.Outcome = outcome
	if err != nil {
		op.Err = err.Error()
	}
}

// AddFault records a fault.
func (h *History) AddFault(f Fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Faults = append(h.Faults, f)
}

// Counts returns how many ops ended each way.
func (h *History) Counts() map[Outcome]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := map[Outcome]int{}
	for _, op := range h.Ops {
		n[op.Outcome]++
	}
	return n
}

// Final is the cluster's state after the run, read once it was quiet.
type Final struct {
	// ReadAt is when the final read began: after every op ended.
	ReadAt    time.Time
	Mailboxes []FinalMailbox
}

// FinalMailbox is one mailbox at the end.
type FinalMailbox struct {
	Account, Name string
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	// IMAP is what a fresh IMAP session shows: UID, FLAGS, the token from
	// the ENVELOPE and the BODY[] sum.
	IMAP []Msg
	// Index is what the storage index holds (ListMessages), with modseqs,
	// and each body as GetMessageBody streams it.
	Index []Msg
}

// rel is t relative to the start of the history, for reports.
func (h *History) rel(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%.3fs", t.Sub(h.Start).Seconds())
}

// Describe is one line about op, for reports.
func (h *History) Describe(op *Op) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s %s", op.ID, op.Client, op.Kind)
	if op.Account != "" {
		fmt.Fprintf(&b, " %s/%s", op.Account, op.Mailbox)
	}
	if op.Dest != "" {
		fmt.Fprintf(&b, " → %s", op.Dest)
	}
	if op.Token != "" {
		fmt.Fprintf(&b, " token=%s", op.Token)
	}
	if op.Mode != "" {
		fmt.Fprintf(&b, " %s%v", op.Mode, op.Flags)
	} else if len(op.Flags) > 0 {
		fmt.Fprintf(&b, " flags=%v", op.Flags)
	}
	if len(op.UIDs) > 0 {
		fmt.Fprintf(&b, " uids=%s", uidList(op.UIDs))
	}
	fmt.Fprintf(&b, " [%s … %s] %s", h.rel(op.Invoke), h.rel(op.Complete), op.Outcome)
	if op.Err != "" {
		fmt.Fprintf(&b, " (%s)", op.Err)
	}
	for _, r := range op.Recipients {
		fmt.Fprintf(&b, " %s:%s", r.Account, r.Outcome)
		if r.UID != 0 {
			fmt.Fprintf(&b, ":uid=%d", r.UID)
		}
	}
	if op.UID != 0 {
		fmt.Fprintf(&b, " APPENDUID %d %d", op.UIDValidity, op.UID)
	}
	if len(op.SrcUIDs) > 0 || len(op.DestUIDs) > 0 {
		fmt.Fprintf(&b, " COPYUID %d %s %s", op.UIDValidity, uidList(op.SrcUIDs), uidList(op.DestUIDs))
	}
	if op.Kind == List {
		fmt.Fprintf(&b, " HIGHESTMODSEQ=%d UIDNEXT=%d", op.HighestModSeq, op.UIDNext)
	}
	if len(op.Msgs) > 0 {
		b.WriteString(" msgs:")
		for i, m := range op.Msgs {
			if i == 12 {
				fmt.Fprintf(&b, " …(%d more)", len(op.Msgs)-i)
				break
			}
			fmt.Fprintf(&b, " %d%v", m.UID, m.Flags)
			if m.ModSeq != 0 {
				fmt.Fprintf(&b, "@%d", m.ModSeq)
			}
			if m.Token != "" {
				fmt.Fprintf(&b, "=%s", m.Token)
			}
		}
	}
	return b.String()
}

// uidList formats UIDs compactly: 1:4,7.
func uidList(uids []uint32) string {
	s := append([]uint32(nil), uids...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var parts []string
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d:%d", s[i], s[j]))
		} else {
			parts = append(parts, fmt.Sprint(s[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}
