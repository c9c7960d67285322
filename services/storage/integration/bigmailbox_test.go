package integration

import (
	"context"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/mailfleet/mailfleet/pkg/mailcorpus"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// bigMailboxSize is how many messages TestBigMailbox works on:
// MAILFLEET_BIG_MAILBOX overrides the default of 100 000.
func bigMailboxSize(t *testing.T) int {
	if v := os.Getenv("MAILFLEET_BIG_MAILBOX"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			t.Fatalf("MAILFLEET_BIG_MAILBOX=%q: want a number ≥ 10", v)
		}
		return n
	}
	return 100000
}

// fillMailbox appends n corpus messages (seed 1) in batched AppendMessages
// streams of up to 500, `workers` at a time; every third message is \Seen.
// UIDs follow the corpus order within a batch, not across batches.
func fillMailbox(ctx context.Context, t *testing.T, r *replica, account, mailboxID string, n, workers int, maxSize int64) {
	t.Helper()
	const batch = 500
	gen := mailcorpus.NewWithOptions(mailcorpus.Options{Seed: 1, MaxSize: maxSize})
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				from := int(next.Add(batch)) - batch
				if from >= n {
					return
				}
				var bodies [][]byte
				for i := from; i < min(from+batch, n); i++ {
					bodies = append(bodies, gen.Message(i))
				}
				seen := func(i int) bool { return (from+i)%3 == 0 }
				if _, err := appendMany(ctx, r, account, mailboxID, bodies, seen); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
}

// uidsOf returns the UIDs of msgs.
func uidsOf(msgs []*storagev1.Message) []uint32 {
	out := make([]uint32, len(msgs))
	for i, m := range msgs {
		out[i] = m.Uid
	}
	return out
}

// checkAscending fails unless uids are strictly ascending.
func checkAscending(t *testing.T, what string, uids []uint32) {
	t.Helper()
	for i := 1; i < len(uids); i++ {
		if uids[i] <= uids[i-1] {
			t.Fatalf("%s: UID %d after %d", what, uids[i], uids[i-1])
		}
	}
}

// keyPrefix is the storage tier's default etcd prefix.
const keyPrefix = "/mailfleet/v1/"

var all = &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: 1, Last: 0}}}

// Every bulk operation on a mailbox of real size (100 000 realistic
// messages by default): STORE, COPY (and a COPY over quota that must leave
// the destination as it was), MOVE, EXPUNGE, DELETE of a folder and
// DeleteAccount, each in one request, each checked for what a client relies
// on; and every body freed exactly once at the end. Phase timings are
// logged (benchmarks measure speed; nothing here is timed).
func TestBigMailbox(t *testing.T) {
	n := bigMailboxSize(t)
	// No orphan scan: with a grace of an hour it could delete nothing, and
	// listing 100 000 objects every half second (the harness's interval)
	// took a quarter of the storage process's time.
	c := newCluster(t, options{driver: "fs", sweepGrace: time.Hour, extraArgs: []string{"--orphan-scan-interval", "1h"}})
	r := c.replicas[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	acc := setupAccount(t, r, "big@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	phase := time.Now()
	step := func(what string) {
		t.Logf("%-40s %v", what, time.Since(phase).Round(time.Millisecond))
		phase = time.Now()
	}

	fillMailbox(ctx, t, r, acc.Id, inbox, n, 16, 16<<10)
	step("append " + strconv.Itoa(n) + " messages")
	mb, msgs := listAll(t, r, acc.Id, inbox)
	if len(msgs) != n || int(mb.Messages) != n || mb.UidNext != uint32(n)+1 {
		t.Fatalf("INBOX lists %d entries, counts %d, UIDNEXT %d; want %d, %d, %d", len(msgs), mb.Messages, mb.UidNext, n, n, n+1)
	}
	checkAscending(t, "INBOX", uidsOf(msgs))
	if want := uint32(n - (n+2)/3); mb.Unseen != want {
		t.Fatalf("UNSEEN %d, want %d", mb.Unseen, want)
	}
	step("list")

	// What FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE) needs, for every
	// message: flags from the index, envelope and MIME tree from the
	// messages' summaries, in pages of ~1 MiB.
	listed, withEnvelope, pages := 0, 0, 0
	req := &storagev1.ListMessagesRequest{AccountId: acc.Id, MailboxId: inbox, IncludeEnvelope: true, IncludeStructure: true, Limit: 5000}
	for {
		resp, err := r.Messages.ListMessages(ctx, req)
		if err != nil {
			t.Fatalf("ListMessages with envelopes and structures, page %d: %v", pages, err)
		}
		pages++
		for _, m := range resp.Messages {
			listed++
			if m.Uid != uint32(listed) || m.Structure == nil || m.Structure.Type == "" || m.Envelope == nil {
				t.Fatalf("entry %d: UID %d, structure %v, envelope %v", listed, m.Uid, m.Structure != nil, m.Envelope != nil)
			}
			if len(m.Envelope.From) > 0 {
				withEnvelope++
			}
		}
		if !resp.More {
			break
		}
		req.AfterUid, req.Revision = resp.NextAfterUid, resp.Revision
	}
	if listed != n || withEnvelope < n*9/10 {
		t.Fatalf("listed %d entries (%d with a From), want %d (nearly all with one)", listed, withEnvelope, n)
	}
	step("list with envelopes and structures (" + strconv.Itoa(pages) + " pages)")

	// STORE of every message: one request, every entry changed, one
	// answer naming each, modseqs above the old HIGHESTMODSEQ.
	before := mb.HighestModseq
	stored, err := r.Messages.StoreFlags(ctx, &storagev1.StoreFlagsRequest{AccountId: acc.Id, MailboxId: inbox, Uids: all,
		Op: storagev1.StoreFlagsRequest_OP_ADD, Flags: []string{`\Flagged`}})
	if err != nil {
		t.Fatalf("STORE 1:* +FLAGS (\\Flagged): %v", err)
	}
	if len(stored.Messages) != n {
		t.Fatalf("STORE answered for %d messages, want %d", len(stored.Messages), n)
	}
	step("STORE 1:* +FLAGS (\\Flagged)")
	mb, msgs = listAll(t, r, acc.Id, inbox)
	for _, m := range msgs {
		if !hasFlag(m.Flags, `\Flagged`) || m.Modseq <= before {
			t.Fatalf("UID %d after STORE: flags %v modseq %d (before %d)", m.Uid, m.Flags, m.Modseq, before)
		}
	}
	if mb.HighestModseq <= before {
		t.Fatalf("HIGHESTMODSEQ %d did not pass %d", mb.HighestModseq, before)
	}

	// COPY of every message to a new folder.
	archive := createMailbox(t, r, acc.Id, "Projects")
	copied, err := r.Messages.CopyMessages(ctx, &storagev1.CopyMessagesRequest{AccountId: acc.Id, MailboxId: inbox, Uids: all, DestMailboxId: archive})
	if err != nil {
		t.Fatalf("COPY 1:* Projects: %v", err)
	}
	if len(copied.SourceUids) != n || len(copied.DestUids) != n {
		t.Fatalf("COPYUID names %d/%d messages, want %d", len(copied.SourceUids), len(copied.DestUids), n)
	}
	checkAscending(t, "COPYUID destination", copied.DestUids)
	step("COPY 1:* Projects")
	amb, amsgs := listAll(t, r, acc.Id, archive)
	if len(amsgs) != n || int(amb.Messages) != n || amb.Unseen != mb.Unseen {
		t.Fatalf("Archive: %d entries, counts %d, unseen %d (INBOX unseen %d)", len(amsgs), amb.Messages, amb.Unseen, mb.Unseen)
	}
	quota := getQuota(t, r, acc.Id)
	if quota.UsedMessages != uint64(2*n) {
		t.Fatalf("usage %d messages after the copy, want %d", quota.UsedMessages, 2*n)
	}

	// A COPY that does not fit in the quota fails as a whole: the
	// destination stays as it was (RFC 9051 6.4.7).
	setQuota(t, r, acc.Id, 0, uint64(2*n+n/2))
	trash := mailboxID(t, r, acc.Id, "Trash")
	tmbBefore, _ := listAll(t, r, acc.Id, trash)
	_, err = r.Messages.CopyMessages(ctx, &storagev1.CopyMessagesRequest{AccountId: acc.Id, MailboxId: inbox, Uids: all, DestMailboxId: trash})
	if storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_OVER_QUOTA {
		t.Fatalf("COPY over quota: %v, want OVER_QUOTA", err)
	}
	tmb, tmsgs := listAll(t, r, acc.Id, trash)
	if len(tmsgs) != 0 || tmb.Messages != 0 || tmb.HighestModseq != tmbBefore.HighestModseq {
		t.Fatalf("Trash after a failed COPY: %d entries, count %d, modseq %d → %d", len(tmsgs), tmb.Messages, tmbBefore.HighestModseq, tmb.HighestModseq)
	}
	setQuota(t, r, acc.Id, 0, 0)
	step("COPY over quota (refused)")

	// MOVE of half of Archive to Trash.
	half := &storagev1.UIDSet{Ranges: []*storagev1.UIDRange{{First: amsgs[0].Uid, Last: amsgs[n/2-1].Uid}}}
	moved, err := r.Messages.MoveMessages(ctx, &storagev1.MoveMessagesRequest{AccountId: acc.Id, MailboxId: archive, Uids: half, DestMailboxId: trash})
	if err != nil || len(moved.DestUids) != n/2 {
		t.Fatalf("MOVE of %d: %d moved, %v", n/2, len(moved.GetDestUids()), err)
	}
	step("MOVE 1:" + strconv.Itoa(n/2) + " Trash")
	amb, _ = listAll(t, r, acc.Id, archive)
	tmb, tmsgs = listAll(t, r, acc.Id, trash)
	if int(amb.Messages) != n-n/2 || len(tmsgs) != n/2 || int(tmb.Messages) != n/2 {
		t.Fatalf("after MOVE: Archive %d, Trash %d (%d listed)", amb.Messages, tmb.Messages, len(tmsgs))
	}
	checkAscending(t, "Trash", uidsOf(tmsgs))

	// EXPUNGE of every message of INBOX (all flagged \Deleted first).
	if _, err := r.Messages.StoreFlags(ctx, &storagev1.StoreFlagsRequest{AccountId: acc.Id, MailboxId: inbox, Uids: all,
		Op: storagev1.StoreFlagsRequest_OP_ADD, Flags: []string{`\Deleted`}}); err != nil {
		t.Fatal(err)
	}
	step("STORE 1:* +FLAGS (\\Deleted)")
	expunged, err := r.Messages.ExpungeMessages(ctx, &storagev1.ExpungeMessagesRequest{AccountId: acc.Id, MailboxId: inbox})
	if err != nil || len(expunged.ExpungedUids) != n {
		t.Fatalf("EXPUNGE: %d expunged, %v", len(expunged.GetExpungedUids()), err)
	}
	step("EXPUNGE (all)")
	mb, msgs = listAll(t, r, acc.Id, inbox)
	if len(msgs) != 0 || mb.Messages != 0 || mb.Unseen != 0 || mb.Size != 0 {
		t.Fatalf("INBOX after EXPUNGE: %d entries, counters %d/%d/%d", len(msgs), mb.Messages, mb.Unseen, mb.Size)
	}
	if mb.UidNext != uint32(n)+1 {
		t.Fatalf("UIDNEXT moved by an expunge: %d", mb.UidNext)
	}

	// DELETE of a folder with its messages.
	if _, err := r.Mailbox.DeleteMailbox(ctx, &storagev1.DeleteMailboxRequest{AccountId: acc.Id, Name: "Projects"}); err != nil {
		t.Fatalf("DELETE Projects: %v", err)
	}
	step("DELETE Projects (" + strconv.Itoa(n-n/2) + " messages)")
	if quota := getQuota(t, r, acc.Id); quota.UsedMessages != uint64(n/2) {
		t.Fatalf("usage %d messages after EXPUNGE and DELETE, want the %d in Trash", quota.UsedMessages, n/2)
	}

	// DeleteAccount with the rest.
	if _, err := r.Accounts.DeleteAccount(ctx, &storagev1.DeleteAccountRequest{AccountId: acc.Id}); err != nil {
		t.Fatalf("DeleteAccount: %v", err)
	}
	step("DeleteAccount (" + strconv.Itoa(n/2) + " messages)")
	cli := c.etcdClient()
	for _, prefix := range []string{"accounts/" + acc.Id + "/", "bodies/", "cleanup/", "uploads/"} {
		resp, err := cli.Get(ctx, keyPrefix+prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || resp.Count != 0 {
			t.Fatalf("keys left under %s: %v (%v)", prefix, resp, err)
		}
	}
	// Every body was freed exactly once (n bodies: copies and moves share them).
	freed := map[string]int{}
	resp, err := cli.Get(ctx, keyPrefix+"freed/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		rec := &records.FreedBodies{}
		if err := proto.Unmarshal(kv.Value, rec); err != nil {
			t.Fatal(err)
		}
		for _, k := range rec.BodyKeys {
			freed[k]++
		}
	}
	if len(freed) != n {
		t.Fatalf("%d bodies freed, want %d", len(freed), n)
	}
	for k, times := range freed {
		if times != 1 {
			t.Fatalf("body %s freed %d times", k, times)
		}
	}
}

func createMailbox(t *testing.T, r *replica, account, name string) string {
	t.Helper()
	resp, err := r.Mailbox.CreateMailbox(ctxT(t), &storagev1.CreateMailboxRequest{AccountId: account, Name: name})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return resp.Mailbox.Id
}

func getQuota(t *testing.T, r *replica, account string) *storagev1.Quota {
	t.Helper()
	resp, err := r.Accounts.GetAccount(ctxT(t), &storagev1.GetAccountRequest{AccountId: account})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Account.Quota
}

func setQuota(t *testing.T, r *replica, account string, bytes, messages uint64) {
	t.Helper()
	if _, err := r.Accounts.SetQuota(ctxT(t), &storagev1.SetQuotaRequest{AccountId: account, LimitBytes: bytes, LimitMessages: messages}); err != nil {
		t.Fatal(err)
	}
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}
