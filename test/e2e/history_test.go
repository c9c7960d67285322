package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/testing/engines"
	"github.com/mailfleet/mailfleet/test/cluster"
	"github.com/mailfleet/mailfleet/test/history"
)

// TestHistoryUnderFaults is a fault-injection history check, in the spirit
// of etcd's robustness tests and Jepsen: random concurrent deliveries,
// APPEND, COPY, MOVE, STORE, EXPUNGE and POP3 sessions of three accounts
// through 2 access and 2 storage processes on 3 etcd members and MinIO,
// while one fault at a time is injected (kill -9 of a storage or an access
// process, stop or kill -9 of an etcd member, restart of MinIO, each then
// started again). Every request and its answer are recorded; after a quiet
// phase the final state is read through IMAP and the storage API, and
// history.Check proves the invariants on the record (see test/history).
//
// MAILFLEET_HISTORY_SEED replays a seed (the log prints it);
// MAILFLEET_HISTORY_DURATION sets the workload's length (default 90s;
// the whole test takes about two minutes on two cores; longer runs need
// go test -timeout).
// On a violation the history and the final state are written to a JSON
// file named in the log (always, to MAILFLEET_HISTORY_OUT if set).
func TestHistoryUnderFaults(t *testing.T) {
	seed := rand.Uint64()
	if s := os.Getenv("MAILFLEET_HISTORY_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("MAILFLEET_HISTORY_SEED: %v", err)
		}
	}
	workload := 90 * time.Second
	if s := os.Getenv("MAILFLEET_HISTORY_DURATION"); s != "" {
		var err error
		if workload, err = time.ParseDuration(s); err != nil {
			t.Fatalf("MAILFLEET_HISTORY_DURATION: %v", err)
		}
	}
	t.Logf("seed %d (replay: MAILFLEET_HISTORY_SEED=%d), workload %v", seed, seed, workload)
	// Setup, the quiet phase, the final read and the check take about a
	// minute; more for long runs.
	if deadline, ok := t.Deadline(); ok && time.Until(deadline) < workload+2*time.Minute+workload/10 {
		t.Fatalf("a %v workload needs a longer test timeout (go test -timeout %v)", workload, (workload + 5*time.Minute + workload/10).Round(time.Minute))
	}

	// A MinIO of its own: this test restarts it.
	minio, err := engines.StartMinIO(filepath.Join(t.TempDir(), "minio"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(minio.Stop)
	c := cluster.Start(t, binDir, minio, cluster.Options{EtcdMembers: 3, Storage: 2, Access: 2,
		// An interrupted MOVE is finished by the sweeper two sweeps after it
		// stopped, and a crashed bulk COPY's staging holds its destination
		// for the TTL: both well within the quiet phase.
		StorageArgs: []string{"--sweep-interval", "2s", "--bulk-staging-ttl", "10s"},
		// A killed pod's POP3 maildrop lock outlives it this long.
		AccessArgs: []string{"--pop3-lock-ttl", "3s"},
	})
	r := &historyRun{c: c, h: history.New(seed), seed: seed}
	if err := r.dialStorage(); err != nil {
		t.Fatal(err)
	}
	defer r.close()
	r.setupAccounts(t, 3)

	plan := history.Schedule(seed, workload, len(c.Storage), len(c.Access), len(c.Etcd.Members))
	ctx, cancel := context.WithTimeout(context.Background(), workload)
	defer cancel()
	var wg sync.WaitGroup
	// If the test stops early, the clients stop before the cluster does.
	t.Cleanup(func() { cancel(); wg.Wait() })
	spawn := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	for _, a := range r.accounts {
		for k := 0; k < 3; k++ {
			spawn(func() { r.imapClient(ctx, a, k) })
		}
		spawn(func() { r.pop3Client(ctx, a) })
		spawn(func() { r.snapshotter(ctx, a) })
	}
	spawn(func() { r.deliverer(ctx) })

	r.injectFaults(t, ctx, plan, minio)
	<-ctx.Done()
	wg.Wait()

	// Quiet phase: everything is running again (every fault restarted what
	// it stopped); let interrupted MOVEs be finished, stagings expire and
	// POP3 locks lapse before the final read.
	for _, m := range c.Etcd.Members {
		if err := m.WaitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(12 * time.Second)

	final := r.readFinal(t)
	vs, cov := history.Check(r.h, final)

	counts := map[history.Kind]map[history.Outcome]int{}
	for _, op := range r.h.Ops {
		if counts[op.Kind] == nil {
			counts[op.Kind] = map[history.Outcome]int{}
		}
		counts[op.Kind][op.Outcome]++
	}
	var kinds []string
	for k, n := range counts {
		kinds = append(kinds, fmt.Sprintf("%s %d ok/%d failed/%d unknown", k, n[history.OK], n[history.Failed], n[history.Unknown]))
	}
	sort.Strings(kinds)
	t.Logf("ops: %s", strings.Join(kinds, ", "))
	messages := 0
	for _, fm := range final.Mailboxes {
		messages += len(fm.Index)
	}
	t.Logf("final state: %d messages in %d mailboxes; %d unknown outcomes took effect", messages, len(final.Mailboxes), tookEffect(r.h, final))
	t.Logf("unknown outcomes by cause: %s", unknownCauses(r.h))
	t.Logf("checked: %s", cov)
	t.Logf("history: %d operations, %d faults, %d violations", len(r.h.Ops), len(r.h.Faults), len(vs))
	path := os.Getenv("MAILFLEET_HISTORY_OUT")
	if path == "" && len(vs) > 0 {
		path = filepath.Join(os.TempDir(), fmt.Sprintf("mailfleet-history-%d.json", seed))
	}
	if path != "" {
		b, err := json.Marshal(struct {
			History    *history.History
			Final      *history.Final
			Violations []history.Violation
		}{r.h, final, vs})
		if err == nil {
			err = os.WriteFile(path, b, 0o644)
		}
		if err != nil {
			t.Errorf("writing the history: %v", err)
		}
		t.Logf("history and final state written to %s", path)
	}
	for k, v := range vs {
		if k == 50 {
			t.Logf("… and %d more", len(vs)-k)
			break
		}
		t.Log(r.h.Report(v))
	}
	if len(vs) > 0 {
		t.Fatalf("%d violations (seed %d)", len(vs), seed)
	}
}

// setupAccounts creates n accounts (every account has INBOX, Archive and
// Trash from the start).
func (r *historyRun) setupAccounts(t *testing.T, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		a := &historyAccount{idx: i, name: fmt.Sprintf("a%d", i), address: fmt.Sprintf("hist%d@example.test", i),
			password: fmt.Sprintf("hist-secret-%d", i), mailboxIDs: map[string]string{}}
		a.id = r.c.CreateAccount(a.address, a.password).Id
		for _, name := range history.Mailboxes {
			resp, err := r.c.Mailbox.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: a.id, Name: name})
			if err != nil {
				t.Fatalf("mailbox %s of %s: %v", name, a.address, err)
			}
			a.mailboxIDs[name] = resp.Mailbox.Id
		}
		r.accounts = append(r.accounts, a)
	}
}

// injectFaults runs the schedule, one fault at a time, until the workload
// ends. It runs on the test's goroutine: a process that does not come back
// fails the test.
func (r *historyRun) injectFaults(t *testing.T, ctx context.Context, plan []history.PlannedFault, minio *engines.MinIO) {
	start := time.Now()
	for _, f := range plan {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(f.At))):
		}
		began := time.Now()
		var what string
		var err error
		switch f.Kind {
		case history.KillStorage:
			p := r.c.Storage[f.Target]
			what = "kill -9 " + p.Name
			p.Signal(syscall.SIGKILL)
			time.Sleep(f.Down)
			p.Start()
		case history.KillAccess:
			p := r.c.Access[f.Target].Process
			what = "kill -9 " + p.Name
			p.Signal(syscall.SIGKILL)
			time.Sleep(f.Down)
			p.Start()
		case history.StopEtcd:
			m := r.c.Etcd.Members[f.Target]
			if f.Kill {
				what = "kill -9 etcd " + m.Name
				m.Kill()
			} else {
				what = "stop etcd " + m.Name
				m.Stop()
			}
			time.Sleep(f.Down)
			if err = m.Start(); err == nil {
				err = m.WaitHealthy(30 * time.Second)
			}
		case history.RestartMinIO:
			what = "restart MinIO"
			minio.Stop()
			time.Sleep(f.Down)
			err = minio.Start()
		}
		fault := history.Fault{What: what, Start: began, End: time.Now()}
		if err != nil {
			fault.Err = err.Error()
		}
		r.h.AddFault(fault)
		t.Logf("fault at %.1fs: %s, down %v, whole again after %.1fs", began.Sub(start).Seconds(), what, f.Down, time.Since(began).Seconds())
		if err != nil {
			t.Fatalf("%s: restarting failed: %v", what, err)
		}
	}
}

// readFinal reads every mailbox of every account through the storage API
// (index entries with modseqs, and each body) and through a fresh IMAP
// session (UID, FLAGS, ENVELOPE, BODY[]).
func (r *historyRun) readFinal(t *testing.T) *history.Final {
	final := &history.Final{ReadAt: time.Now()}
	msgs := storagev1.NewMessageServiceClient(r.storage[0])
	for _, a := range r.accounts {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		list, err := r.c.Mailbox.ListMailboxes(ctx, &storagev1.ListMailboxesRequest{AccountId: a.id})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		im := r.finalIMAP(t, a)
		for _, mb := range list.Mailboxes {
			status, index, err := listMailbox(msgs, a.id, mb.Id)
			if err != nil {
				t.Fatalf("final listing of %s/%s: %v", a.name, mb.Name, err)
			}
			for k, m := range index {
				body, err := readBody(msgs, a.id, mb.Id, m.UID)
				if err != nil {
					index[k].BodyErr = err.Error()
				} else {
					index[k].BodySum = history.Sum(body)
				}
			}
			fm := history.FinalMailbox{Account: a.name, Name: mb.Name, UIDValidity: status.UidValidity,
				UIDNext: status.UidNext, HighestModSeq: status.HighestModseq, Index: index}
			fm.IMAP, err = im.mailbox(mb.Name, status.UidValidity)
			if err != nil {
				t.Fatalf("final IMAP read of %s/%s: %v", a.name, mb.Name, err)
			}
			final.Mailboxes = append(final.Mailboxes, fm)
		}
		im.c.Logout().Wait()
		im.c.Close()
	}
	return final
}

type finalReader struct{ c *imapclient.Client }

func (r *historyRun) finalIMAP(t *testing.T, a *historyAccount) *finalReader {
	c, err := imapclient.DialTLS(r.c.Access[0].IMAPS, &imapclient.Options{
		TLSConfig: &tls.Config{InsecureSkipVerify: true}, Dialer: &net.Dialer{Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(a.address, a.password).Wait(); err != nil {
		t.Fatalf("final login of %s: %v", a.address, err)
	}
	return &finalReader{c}
}

// mailbox reads a mailbox's UIDs, flags and tokens, then its bodies 50 at
// a time.
func (f *finalReader) mailbox(name string, validity uint32) ([]history.Msg, error) {
	data, err := f.c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, err
	}
	if data.UIDValidity != validity {
		return nil, fmt.Errorf("IMAP says UIDVALIDITY %d, the storage API %d", data.UIDValidity, validity)
	}
	all := imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}
	bufs, err := f.c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect()
	if err != nil {
		return nil, err
	}
	var out []history.Msg
	at := map[uint32]int{}
	for _, m := range bufs {
		hm := history.Msg{UID: uint32(m.UID), Flags: flagStrings(m.Flags)}
		if m.Envelope != nil {
			hm.Token = history.TokenFromMessageID(m.Envelope.MessageID)
		}
		at[hm.UID] = len(out)
		out = append(out, hm)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	for from := 0; from < len(out); from += 50 {
		var uids []uint32
		for _, m := range out[from:min(from+50, len(out))] {
			uids = append(uids, m.UID)
		}
		bufs, err := f.c.Fetch(uidSet(uids), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		if err != nil {
			return nil, err
		}
		for _, m := range bufs {
			if body := m.FindBodySection(section); body != nil {
				out[at[uint32(m.UID)]].BodySum = history.Sum(body)
			}
		}
	}
	for k := range out {
		if out[k].BodySum == "" {
			out[k].BodyErr = "FETCH BODY.PEEK[] returned nothing"
		}
	}
	return out, f.c.Unselect().Wait()
}

// tookEffect counts the ops with an unknown outcome (a dropped connection,
// NO [UNAVAILABLE]) whose message is in the final state: answers a client
// would have retried, duplicating the message.
func tookEffect(h *history.History, final *history.Final) int {
	tokens := map[string]bool{}
	for _, fm := range final.Mailboxes {
		for _, m := range fm.Index {
			tokens[m.Token] = true
		}
	}
	n := 0
	for _, op := range h.Ops {
		if (op.Kind == history.Append || op.Kind == history.Deliver) && op.Outcome == history.Unknown && tokens[op.Token] {
			n++
		}
	}
	return n
}

// unknownCauses summarizes why ops ended Unknown (digits blanked out so that
// like errors count together), most frequent first.
func unknownCauses(h *history.History) string {
	n := map[string]int{}
	for _, op := range h.Ops {
		if op.Outcome != history.Unknown {
			continue
		}
		cause := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return '#'
			}
			return r
		}, op.Err)
		if len(cause) > 100 {
			cause = cause[:100] + "…"
		}
		n[fmt.Sprintf("%s: %s", op.Kind, cause)]++
	}
	var causes []string
	for c := range n {
		causes = append(causes, c)
	}
	sort.Slice(causes, func(i, j int) bool {
		return n[causes[i]] > n[causes[j]] || n[causes[i]] == n[causes[j]] && causes[i] < causes[j]
	})
	var out []string
	for _, c := range causes {
		out = append(out, fmt.Sprintf("%d× %s", n[c], c))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}
