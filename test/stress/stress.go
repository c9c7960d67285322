// Package stress drives many IMAP clients at once against a running
// Mailfleet and checks every response against the mailbox model each
// client must see.
//
// N clients log in as M users, spread across the access pods, and do
// random SELECT, EXAMINE, FETCH (flags, whole bodies, headers), STORE,
// APPEND, EXPUNGE, COPY, MOVE, SEARCH, NOOP, IDLE and LOGOUT in INBOX and
// Archive. Each client keeps the sequence-number-to-UID map the server
// told it (EXISTS, EXPUNGE, VANISHED, FETCH) and checks every untagged
// response against it; clients of one user share what must agree across
// sessions (UIDVALIDITY, the body under a UID, the flags at a MODSEQ, the
// highest UID seen). What is checked, with the RFC rule behind each check,
// is written where it is checked (model.go, session.go, workload.go).
//
// Three kinds of failure are counted: an inconsistency (a response no
// correct server could send), a hung session (a command without its
// answer within CommandTimeout) and a server fault (NO [SERVERBUG], BAD
// for a well-formed command, an unexpected BYE or a dropped connection).
// The figures (commands per second and latency per command) are what
// Report prints.
package stress

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailfleet/mailfleet/pkg/mailcorpus"
)

// User is an account the clients log in as.
type User struct{ Name, Password string }

// Config is one stress run.
type Config struct {
	// Addrs are the IMAPS (implicit TLS) addresses of the access pods;
	// client i uses Addrs[i % len(Addrs)].
	Addrs []string
	Users []User
	// Clients is the number of simultaneous sessions; client i logs in as
	// Users[i % len(Users)].
	Clients  int
	Duration time.Duration
	Seed     uint64
	// CommandTimeout: a command still without its tagged answer after this
	// long is a hung session (default 60s).
	CommandTimeout time.Duration
	TLS            *tls.Config
	// MaxFailures stops recording (not the run) after this many (default 50).
	MaxFailures int
}

// Failure kinds.
const (
	KindInconsistent = "inconsistent"
	KindHung         = "hung"
	KindServerBug    = "server fault"
)

// Failure is one thing a correct server would not do, with the end of the
// session's transcript.
type Failure struct {
	Kind, Client, Text string
	Transcript         []string
}

func (f Failure) String() string {
	return fmt.Sprintf("[%s] %s: %s\n      %s", f.Kind, f.Client, f.Text, strings.Join(f.Transcript, "\n      "))
}

// Result is what a run saw.
type Result struct {
	Elapsed  time.Duration
	Clients  int
	Users    int
	Failures []Failure
	// Counts per failure kind (all of them, also past MaxFailures).
	Counts   map[string]int
	Commands []CommandStats
	Total    int
}

// CommandStats are the figures of one command.
type CommandStats struct {
	Name          string
	Count         int
	PerSecond     float64
	P50, P99, Max time.Duration
}

// Run runs the clients until the duration is over or ctx ends, then
// returns what they saw.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if len(cfg.Addrs) == 0 || len(cfg.Users) == 0 || cfg.Clients <= 0 {
		return nil, fmt.Errorf("stress: need addresses, users and clients")
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = 60 * time.Second
	}
	if cfg.MaxFailures == 0 {
		cfg.MaxFailures = 50
	}
	if cfg.TLS == nil {
		return nil, fmt.Errorf("stress: a TLS config is required (the tool speaks IMAPS)")
	}
	r := &runner{cfg: cfg, state: newShared(), stats: newStats(), counts: map[string]int{}}
	gen := mailcorpus.NewWithOptions(mailcorpus.Options{Seed: int64(cfg.Seed), MaxSize: mailcorpus.MinMaxSize, NoBroken: true})
	for i := range 64 {
		// Served with CRLF line ends: the checksum is of what comes back.
		r.corpus = append(r.corpus, toCRLF(gen.Message(i)))
	}
	if err := r.prepare(ctx); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.client(ctx, i)
		}()
	}
	wg.Wait()
	res := &Result{Elapsed: time.Since(start), Clients: cfg.Clients, Users: len(cfg.Users), Failures: r.failures, Counts: r.counts}
	res.Commands, res.Total = r.stats.summary(res.Elapsed)
	return res, nil
}

func toCRLF(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

type runner struct {
	cfg    Config
	state  *shared
	stats  *stats
	corpus [][]byte
	nextID atomic.Uint64

	mu       sync.Mutex
	failures []Failure
	counts   map[string]int
}

func (r *runner) record(kind string, s *session, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[kind]++
	if len(r.failures) >= r.cfg.MaxFailures {
		return
	}
	r.failures = append(r.failures, Failure{Kind: kind, Client: fmt.Sprintf("client %d (%s on %s)", s.client, s.user.Name, s.addr),
		Text: text, Transcript: append([]string(nil), s.transcript...)})
}

func (r *runner) rng(s *session) *rand.Rand {
	return rand.New(rand.NewPCG(r.cfg.Seed, uint64(s.client)<<32|uint64(s.tagN)))
}

// prepare creates Archive for every user (it may exist from an earlier run).
func (r *runner) prepare(ctx context.Context) error {
	for i, u := range r.cfg.Users {
		s := &session{run: r, client: -1 - i, user: u, addr: r.cfg.Addrs[0], ownKw: map[string]map[uint32]kwState{}}
		if err := s.dial(); err != nil {
			return fmt.Errorf("stress: %s: %w", u.Name, err)
		}
		rep, _, err := s.exec("LOGIN", quote(u.Name)+" "+quote(u.Password), nil)
		if err == nil && rep.status != "OK" {
			err = fmt.Errorf("LOGIN: %s", rep)
		}
		if err == nil {
			rep, _, err = s.exec("CREATE", "Archive", nil)
			if err == nil && rep.status != "OK" && !strings.Contains(rep.code, "ALREADYEXISTS") {
				err = fmt.Errorf("CREATE Archive: %s", rep)
			}
		}
		s.close()
		if err != nil {
			return fmt.Errorf("stress: %s: %w", u.Name, err)
		}
	}
	return nil
}

// client is one simulated device: it logs in and works until ctx ends; a
// hung or dropped session is recorded and the client starts over.
func (r *runner) client(ctx context.Context, i int) {
	s := &session{run: r, client: i, user: r.cfg.Users[i%len(r.cfg.Users)], addr: r.cfg.Addrs[i%len(r.cfg.Addrs)],
		keyword: fmt.Sprintf("$Stress%d", i), ownKw: map[string]map[uint32]kwState{}}
	rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(i)))
	defer s.close()
	for ctx.Err() == nil {
		var err error
		if s.conn == nil {
			err = s.login()
		} else {
			err = s.step(rng)
		}
		switch {
		case err == nil:
		case err == errResync:
			s.v = nil
		case ctx.Err() != nil:
		case err == errHung:
			s.fail(KindHung, "no answer within %v", r.cfg.CommandTimeout)
			s.close()
		default:
			s.fail(KindServerBug, "%v", err)
			s.close()
		}
	}
	if s.conn != nil && s.v != nil {
		// A last poll: what must be expunged by now must be.
		s.opNoop(rng)
	}
}

// shared is what the clients of one user must agree on.
type shared struct {
	mu       sync.Mutex
	validity map[string]uint32            // user/mailbox
	maxUIDs  map[string]uint32            // user/mailbox: highest UID any client has seen
	ids      map[string]string            // user/mailbox/uid: X-Stress-Id of the body
	flags    map[string]map[uint64]string // user/mailbox/uid: flags at a MODSEQ
}

func newShared() *shared {
	return &shared{validity: map[string]uint32{}, maxUIDs: map[string]uint32{}, ids: map[string]string{}, flags: map[string]map[uint64]string{}}
}

// uidValidity: RFC 9051 2.3.1.1: the UIDVALIDITY of a mailbox that is not
// deleted and recreated never changes.
func (sh *shared) uidValidity(user, mailbox string, v uint32) error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	k := user + "/" + mailbox
	if old, ok := sh.validity[k]; ok && old != v {
		return fmt.Errorf("%s: UIDVALIDITY %d, another session was told %d", mailbox, v, old)
	}
	sh.validity[k] = v
	return nil
}

func (sh *shared) maxUID(user, mailbox string) uint32 {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.maxUIDs[user+"/"+mailbox]
}

func (sh *shared) seenUID(user, mailbox string, uid uint32) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	k := user + "/" + mailbox
	sh.maxUIDs[k] = max(sh.maxUIDs[k], uid)
}

// bodyID: a UID names one message for good (RFC 9051 2.3.1.1), so every
// session must get the same body under it.
func (sh *shared) bodyID(user, mailbox string, uid uint32, id string) error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	k := fmt.Sprintf("%s/%s/%d", user, mailbox, uid)
	if old, ok := sh.ids[k]; ok && old != id {
		return fmt.Errorf("%s UID %d is message %s, another session got %s under it", mailbox, uid, id, old)
	}
	sh.ids[k] = id
	mk := user + "/" + mailbox
	sh.maxUIDs[mk] = max(sh.maxUIDs[mk], uid)
	return nil
}

func (sh *shared) idOf(user, mailbox string, uid uint32) string {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.ids[fmt.Sprintf("%s/%s/%d", user, mailbox, uid)]
}

// flagsAt: a MODSEQ names one state of a message's metadata (RFC 7162
// 3.1.1), so two sessions seeing one MODSEQ must see the same flags.
func (sh *shared) flagsAt(user, mailbox string, uid uint32, modseq uint64, flags []string) error {
	norm := make([]string, 0, len(flags))
	for _, f := range flags {
		if !strings.EqualFold(f, `\Recent`) {
			norm = append(norm, strings.ToLower(f))
		}
	}
	sort.Strings(norm)
	got := strings.Join(norm, " ")
	sh.mu.Lock()
	defer sh.mu.Unlock()
	k := fmt.Sprintf("%s/%s/%d", user, mailbox, uid)
	m := sh.flags[k]
	if m == nil {
		m = map[uint64]string{}
		sh.flags[k] = m
	}
	if old, ok := m[modseq]; ok && old != got {
		return fmt.Errorf("%s UID %d at MODSEQ %d has flags (%s), another session saw (%s) at the same MODSEQ", mailbox, uid, modseq, got, old)
	}
	m[modseq] = got
	return nil
}

// stats keeps every latency per command.
type stats struct {
	mu  sync.Mutex
	lat map[string][]time.Duration
}

func newStats() *stats { return &stats{lat: map[string][]time.Duration{}} }

func (st *stats) add(name string, d time.Duration) {
	st.mu.Lock()
	st.lat[name] = append(st.lat[name], d)
	st.mu.Unlock()
}

func (st *stats) summary(elapsed time.Duration) ([]CommandStats, int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []CommandStats
	total := 0
	for name, l := range st.lat {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		cs := CommandStats{Name: name, Count: len(l), PerSecond: float64(len(l)) / elapsed.Seconds(),
			P50: l[len(l)/2], P99: l[len(l)*99/100], Max: l[len(l)-1]}
		out = append(out, cs)
		if !strings.HasPrefix(name, "login ") {
			total += len(l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Count > out[j].Count })
	return out, total
}

// Report prints the figures and the failures.
func (res *Result) Report(w io.Writer) {
	fmt.Fprintf(w, "%d clients on %d users for %v: %d commands, %.1f commands/s; %d inconsistencies, %d hung sessions, %d server faults\n",
		res.Clients, res.Users, res.Elapsed.Round(time.Second), res.Total, float64(res.Total)/res.Elapsed.Seconds(),
		res.Counts[KindInconsistent], res.Counts[KindHung], res.Counts[KindServerBug])
	fmt.Fprintf(w, "  %-22s %8s %9s %9s %9s %9s\n", "command", "count", "per s", "p50", "p99", "max")
	for _, c := range res.Commands {
		fmt.Fprintf(w, "  %-22s %8d %9.1f %9s %9s %9s\n", c.Name, c.Count, c.PerSecond, ms(c.P50), ms(c.P99), ms(c.Max))
	}
	for _, f := range res.Failures {
		fmt.Fprintln(w, f)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// Failed reports whether any failure was seen.
func (res *Result) Failed() bool {
	return res.Counts[KindInconsistent]+res.Counts[KindHung]+res.Counts[KindServerBug] > 0
}
