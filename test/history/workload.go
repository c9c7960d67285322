package history

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The workload: every decision of a client is drawn from its own seeded
// source, so that a seed replays the same requests (their interleaving and
// the answers depend on the cluster).

// Mailboxes are the mailboxes the workload uses (they exist in every account).
var Mailboxes = []string{Inbox, "Archive", "Trash"}

// tokenDomain is the right-hand side of every Message-ID the workload sends.
const tokenDomain = "history.mailfleet.test"

// Token is the identity of the n-th message of the run with seed.
func Token(seed uint64, n int64) string {
	return "h" + strconv.FormatUint(seed, 36) + "-" + strconv.FormatInt(n, 10)
}

// TokenFromMessageID returns the token of a Message-ID the workload sent
// (with or without angle brackets), or "".
func TokenFromMessageID(id string) string {
	id = strings.TrimSpace(id)
	id = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	token, domain, ok := strings.Cut(id, "@")
	if !ok || domain != tokenDomain {
		return ""
	}
	return token
}

// TokenFromBody returns the token in a message's Message-ID header, or "".
func TokenFromBody(body []byte) string {
	header, _, _ := bytes.Cut(body, []byte("\r\n\r\n"))
	for _, line := range strings.Split(string(header), "\r\n") {
		name, value, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(name, "Message-ID") {
			return TokenFromMessageID(value)
		}
	}
	return ""
}

// Sum is the checksum recorded for a body.
func Sum(body []byte) string {
	s := sha256.Sum256(body)
	return hex.EncodeToString(s[:])
}

// Body is a message carrying token: mostly small, sometimes tens of KiB,
// now and then a few hundred KiB (several chunks on every hop), with a line
// that starts with a dot (POP3 dot-stuffing).
func Body(token, to string, r *rand.Rand) []byte {
	var size int
	switch p := r.IntN(100); {
	case p < 70:
		size = 200 + r.IntN(1800)
	case p < 96:
		size = 2<<10 + r.IntN(30<<10)
	default:
		size = 100<<10 + r.IntN(200<<10)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: History <history@example.org>\r\nTo: <%s>\r\nSubject: history %s\r\n", to, token)
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\nDate: %s\r\nMIME-Version: 1.0\r\n", token, tokenDomain,
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.IntN(1<<20))*time.Second).Format(time.RFC1123Z))
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
	fmt.Fprintf(&b, "Token %s.\r\n.a line that starts with a dot\r\n", token)
	const letters = "abcdefghijklmnopqrstuvwxyz      ,."
	line := make([]byte, 0, 80)
	for b.Len() < size {
		line = line[:0]
		for n := 20 + r.IntN(56); len(line) < n; {
			line = append(line, letters[r.IntN(len(letters))])
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// flagPool are the flags STORE and APPEND use (\Deleted only now and then:
// EXPUNGE sets it itself).
var flagPool = []string{`\Seen`, `\Flagged`, `\Answered`, `\Draft`, "$Work", "$Later"}

// AppendFlags are an APPEND's initial flags.
func AppendFlags(r *rand.Rand) []string {
	if r.IntN(2) == 0 {
		return nil
	}
	return pickFlags(r, 1+r.IntN(2))
}

func pickFlags(r *rand.Rand, n int) []string {
	var out []string
	for _, k := range r.Perm(len(flagPool))[:n] {
		out = append(out, flagPool[k])
	}
	return out
}

// StoreFlags draws a STORE.
func StoreFlags(r *rand.Rand) (StoreMode, []string) {
	flags := pickFlags(r, 1+r.IntN(2))
	if r.IntN(20) == 0 {
		flags = append(flags, `\Deleted`)
	}
	switch p := r.IntN(100); {
	case p < 45:
		return StoreAdd, flags
	case p < 80:
		return StoreRemove, flags
	default:
		return StoreReplace, flags
	}
}

// Action is what an IMAP client does next.
type Action string

const (
	ActSelect  Action = "select"
	ActFetch   Action = "fetch"
	ActRead    Action = "read"
	ActAppend  Action = "append"
	ActStore   Action = "store"
	ActCopy    Action = "copy"
	ActMove    Action = "move"
	ActExpunge Action = "expunge"
)

// Size bounds of a mailbox: above Crowded, removals win over additions.
const (
	Crowded = 60
	Full    = 150
)

// NextAction draws an IMAP client's next action, given how many messages
// its view of the selected mailbox holds.
func NextAction(r *rand.Rand, viewSize int) Action {
	type w struct {
		a Action
		n int
	}
	weights := []w{{ActSelect, 8}, {ActFetch, 14}, {ActRead, 5}, {ActAppend, 20}, {ActStore, 22}, {ActCopy, 10}, {ActMove, 9}, {ActExpunge, 9}}
	switch {
	case viewSize == 0:
		weights = []w{{ActSelect, 20}, {ActFetch, 20}, {ActAppend, 60}}
	case viewSize > Full:
		weights = []w{{ActSelect, 5}, {ActFetch, 10}, {ActStore, 10}, {ActMove, 15}, {ActExpunge, 60}}
	case viewSize > Crowded:
		weights = []w{{ActSelect, 8}, {ActFetch, 12}, {ActRead, 4}, {ActAppend, 6}, {ActStore, 20}, {ActCopy, 4}, {ActMove, 16}, {ActExpunge, 30}}
	}
	total := 0
	for _, x := range weights {
		total += x.n
	}
	n := r.IntN(total)
	for _, x := range weights {
		if n < x.n {
			return x.a
		}
		n -= x.n
	}
	return ActFetch
}

// PickUIDs draws the UID set of a STORE, COPY, MOVE or EXPUNGE from a view:
// a few messages, and now and then all of them (a bulk change, which the
// storage tier may split into several transactions or stage).
func PickUIDs(r *rand.Rand, view []uint32) []uint32 {
	if len(view) == 0 {
		return nil
	}
	var out []uint32
	if r.IntN(12) == 0 {
		out = append(out, view...)
	} else {
		for _, k := range r.Perm(len(view))[:min(len(view), 1+r.IntN(5))] {
			out = append(out, view[k])
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// FaultKind is a kind of fault.
type FaultKind string

const (
	KillStorage  FaultKind = "kill -9 storage"
	KillAccess   FaultKind = "kill -9 access"
	StopEtcd     FaultKind = "stop etcd member"
	RestartMinIO FaultKind = "restart MinIO"
)

// PlannedFault is one fault of the schedule.
type PlannedFault struct {
	At     time.Duration // from the start of the workload (or later, if the previous one ran late)
	Kind   FaultKind
	Target int           // which storage, access or etcd member
	Down   time.Duration // how long it stays down
	Kill   bool          // etcd: SIGKILL rather than SIGTERM
}

func (f PlannedFault) String() string {
	s := fmt.Sprintf("%s %d for %v", f.Kind, f.Target, f.Down)
	if f.Kind == RestartMinIO {
		s = fmt.Sprintf("%s (down %v)", f.Kind, f.Down)
	}
	if f.Kind == StopEtcd && f.Kill {
		s += " (SIGKILL)"
	}
	return s
}

// Schedule draws the faults of a workload of duration d: one at a time,
// every kind in each round (in a seeded order), none in the last tenth so
// that the cluster is whole before the workload ends.
func Schedule(seed uint64, d time.Duration, storages, accesses, members int) []PlannedFault {
	r := rand.New(rand.NewPCG(seed, 0xfa17))
	var out []PlannedFault
	at := 5*time.Second + time.Duration(r.IntN(5000))*time.Millisecond
	kinds := []FaultKind{KillStorage, KillAccess, StopEtcd, RestartMinIO}
	for {
		for _, k := range r.Perm(len(kinds)) {
			f := PlannedFault{At: at, Kind: kinds[k], Down: time.Duration(500+r.IntN(3500)) * time.Millisecond}
			switch f.Kind {
			case KillStorage:
				f.Target = r.IntN(storages)
			case KillAccess:
				f.Target = r.IntN(accesses)
			case StopEtcd:
				f.Target = r.IntN(members)
				f.Kill = r.IntN(2) == 0
				f.Down += 2 * time.Second
			}
			// A restart takes a few seconds more than Down.
			if at+f.Down+5*time.Second > d-d/10 {
				return out
			}
			out = append(out, f)
			at += f.Down + 5*time.Second + time.Duration(r.IntN(8000))*time.Millisecond
		}
	}
}
