package integration

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/keys"
	"github.com/mailfleet/mailfleet/services/storage/internal/records"
)

// Each replica keeps the address directory's answers in memory (the storage
// service's recipients.go). A directory change made through another replica
// reaches its cache through an etcd watch within moments, also after etcd
// restarted under the watch; what the directory cannot say (an account
// disabled a moment ago) is checked in the delivery's own transaction.
func TestRecipientCacheFollowsTheDirectory(t *testing.T) {
	c := newCluster(t, options{driver: "fs", replicas: 2})
	a, b := c.replicas[0], c.replicas[1]
	ctx := ctxT(t)
	alice := setupAccount(t, a, "alice@example.test", 0, 0)
	bob := setupAccount(t, a, "bob@example.test", 0, 0)

	resolve := func(addr string) *storagev1.ResolveRecipientResponse {
		t.Helper()
		resp, err := b.Accounts.ResolveRecipient(ctx, &storagev1.ResolveRecipientRequest{Address: addr})
		if err != nil {
			t.Fatalf("resolve %s: %v", addr, err)
		}
		return resp
	}
	// resolvesTo waits (the watch takes moments, the cache's TTL minutes)
	// until replica b answers addr with want and account.
	resolvesTo := func(addr string, want storagev1.ResolveRecipientResponse_Result, account string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp := resolve(addr)
			if resp.Result == want && resp.Account.GetId() == account {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica b still resolves %s to %v %q, want %v %q", addr, resp.Result, resp.Account.GetId(), want, account)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	hits := func() float64 {
		return metricValue(scrape(t, b), "mailfleet_storage_recipient_cache_hits_total")
	}
	deliverTo := func(addr string) *storagev1.RecipientResult {
		t.Helper()
		resp, err := deliver(ctx, b, []string{addr}, message(1, 2000))
		if err != nil {
			t.Fatalf("deliver to %s: %v", addr, err)
		}
		return resp.Results[0]
	}
	waitMetric(t, b, "mailfleet_storage_recipient_cache_live", 1)

	// An unknown address, answered from the cache the second time, becomes
	// an account made through replica a.
	resolvesTo("carol@example.test", storagev1.ResolveRecipientResponse_RESULT_UNKNOWN_USER, "")
	before := hits()
	resolvesTo("carol@example.test", storagev1.ResolveRecipientResponse_RESULT_UNKNOWN_USER, "")
	if hits() <= before {
		t.Fatal("replica b read etcd again for an address it had just resolved: the cache is off")
	}
	carol := setupAccount(t, a, "carol@example.test", 0, 0)
	resolvesTo("carol@example.test", storagev1.ResolveRecipientResponse_RESULT_LOCAL, carol.Id)
	if r := deliverTo("carol@example.test"); r.Status != storagev1.RecipientResult_STATUS_DELIVERED || r.AccountId != carol.Id {
		t.Fatalf("delivery to the new account: %v", r)
	}

	// An alias moves from alice to bob: mail through b follows it.
	if _, err := a.Accounts.AddAlias(ctx, &storagev1.AddAliasRequest{Alias: "sales@example.test", AccountId: alice.Id}); err != nil {
		t.Fatal(err)
	}
	resolvesTo("sales+q4@example.test", storagev1.ResolveRecipientResponse_RESULT_LOCAL, alice.Id)
	if _, err := a.Accounts.RemoveAlias(ctx, &storagev1.RemoveAliasRequest{Alias: "sales@example.test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Accounts.AddAlias(ctx, &storagev1.AddAliasRequest{Alias: "sales@example.test", AccountId: bob.Id}); err != nil {
		t.Fatal(err)
	}
	resolvesTo("sales+q4@example.test", storagev1.ResolveRecipientResponse_RESULT_LOCAL, bob.Id)
	if r := deliverTo("sales+q4@example.test"); r.Status != storagev1.RecipientResult_STATUS_DELIVERED || r.AccountId != bob.Id {
		t.Fatalf("delivery to the moved alias: %v", r)
	}

	// Disabled through a: b's very next delivery refuses it, although its
	// cache still sends the address to alice's account.
	deliverTo("alice@example.test")
	if _, err := a.Accounts.SetDisabled(ctx, &storagev1.SetDisabledRequest{AccountId: alice.Id, Disabled: true}); err != nil {
		t.Fatal(err)
	}
	if r := deliverTo("alice@example.test"); r.Status != storagev1.RecipientResult_STATUS_DISABLED {
		t.Fatalf("delivery to an account disabled a moment ago: %v", r)
	}
	// b's RCPT answers may lag by the account state's TTL (2 s).
	resolvesTo("alice@example.test", storagev1.ResolveRecipientResponse_RESULT_DISABLED, alice.Id)
	if _, msgs := listAll(t, a, alice.Id, mailboxID(t, a, alice.Id, "INBOX")); len(msgs) != 1 {
		t.Fatalf("alice's INBOX holds %d messages, want the one from before she was disabled", len(msgs))
	}
	if _, err := a.Accounts.SetDisabled(ctx, &storagev1.SetDisabledRequest{AccountId: alice.Id, Disabled: false}); err != nil {
		t.Fatal(err)
	}
	if r := deliverTo("alice@example.test"); r.Status != storagev1.RecipientResult_STATUS_DELIVERED {
		t.Fatalf("delivery after enabling again: %v", r)
	}

	// A directory entry that its account's record does not list: what a
	// replica whose cache is behind sees while an alias moves. The delivery
	// is refused for a retry, not made to that account.
	ghost, err := proto.Marshal(&records.AddressRecord{AccountId: alice.Id, Kind: records.AddressRecord_KIND_ALIAS})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.etcdClient().Put(ctx, keys.Layout{Prefix: keys.DefaultPrefix}.Address("example.test", "ghost"), string(ghost)); err != nil {
		t.Fatal(err)
	}
	if r := deliverTo("ghost@example.test"); r.Status != storagev1.RecipientResult_STATUS_TEMPORARY_FAILURE {
		t.Fatalf("delivery through an address alice's record does not list: %v", r)
	}
	if _, msgs := listAll(t, a, alice.Id, mailboxID(t, a, alice.Id, "INBOX")); len(msgs) != 2 {
		t.Fatalf("alice's INBOX holds %d messages, want 2: one reached her through an address that is not hers", len(msgs))
	}

	// A new domain, and a deleted account.
	resolvesTo("dora@new.test", storagev1.ResolveRecipientResponse_RESULT_NOT_LOCAL, "")
	dora := setupAccount(t, a, "dora@new.test", 0, 0)
	resolvesTo("dora@new.test", storagev1.ResolveRecipientResponse_RESULT_LOCAL, dora.Id)
	if _, err := a.Accounts.DeleteAccount(ctx, &storagev1.DeleteAccountRequest{AccountId: carol.Id}); err != nil {
		t.Fatal(err)
	}
	resolvesTo("carol@example.test", storagev1.ResolveRecipientResponse_RESULT_UNKNOWN_USER, "")
	if r := deliverTo("carol@example.test"); r.Status != storagev1.RecipientResult_STATUS_UNKNOWN_USER {
		t.Fatalf("delivery to a deleted account: %v", r)
	}

	// etcd restarts under the watch (which resumes, or ends and starts
	// again): changes made afterwards still reach b's cache.
	resolvesTo("erin@example.test", storagev1.ResolveRecipientResponse_RESULT_UNKNOWN_USER, "")
	member := c.etcd.Members[0]
	member.Stop()
	if err := member.Start(); err != nil {
		t.Fatal(err)
	}
	if err := member.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	erin := setupAccount(t, a, "erin@example.test", 0, 0)
	resolvesTo("erin@example.test", storagev1.ResolveRecipientResponse_RESULT_LOCAL, erin.Id)
	waitMetric(t, b, "mailfleet_storage_recipient_cache_live", 1)
	resolvesTo("frank@example.test", storagev1.ResolveRecipientResponse_RESULT_UNKNOWN_USER, "")
	frank := setupAccount(t, a, "frank@example.test", 0, 0)
	resolvesTo("frank@example.test", storagev1.ResolveRecipientResponse_RESULT_LOCAL, frank.Id)
}

// A replica's upload intents live on its etcd lease and are handed out from
// batches registered ahead (intents.go); the first commit only assumes its
// intent exists. When the lease is lost (here: revoked), deliveries fail
// with a temporary error or succeed, none is lost or stored twice, and the
// replica carries on with a new lease.
func TestDeliveriesSurviveALostUploadLease(t *testing.T) {
	c := newCluster(t, options{driver: "fs"})
	r := c.replicas[0]
	ctx := ctxT(t)
	acc := setupAccount(t, r, "lease@example.test", 0, 0)
	cli := c.etcdClient()
	stored := map[string]bool{}
	retried := 0
	send := func(i int) {
		t.Helper()
		body := []byte(fmt.Sprintf("Subject: lease test %d\r\n\r\nbody %d\r\n", i, i))
		for attempt := 0; ; attempt++ {
			resp, err := deliver(ctx, r, []string{"lease@example.test"}, body)
			if err == nil {
				if resp.Results[0].Status != storagev1.RecipientResult_STATUS_DELIVERED {
					t.Fatalf("message %d: %v", i, resp.Results[0])
				}
				stored[string(body)] = true
				return
			}
			retried++
			if !storagev1.IsTemporary(err) || attempt == 20 {
				t.Fatalf("message %d, attempt %d: %v", i, attempt, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i := range 5 {
		send(i)
	}
	leases, err := cli.Leases(ctx)
	if err != nil || len(leases.Leases) == 0 {
		t.Fatalf("leases: %v %v", leases, err)
	}
	for _, l := range leases.Leases {
		if _, err := cli.Revoke(ctx, l.ID); err != nil {
			t.Fatal(err)
		}
	}
	for i := 5; i < 40; i++ {
		send(i)
	}
	// The batch handed out before the revoke is on the dead lease: the next
	// delivery's commit finds its intent gone. That first refusal makes the
	// replica check its lease and take a new one; keeping the lost one would
	// refuse every delivery for up to a third of the lease's TTL (20 s).
	if retried == 0 {
		t.Fatal("no delivery was refused after the lease went: the test did not reach the missing-intent path")
	}
	if retried > 5 {
		t.Fatalf("%d deliveries refused after the lease went: the replica kept its lost lease", retried)
	}
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	_, msgs := listAll(t, r, acc.Id, inbox)
	if len(msgs) != len(stored) {
		t.Fatalf("INBOX holds %d messages, %d were acknowledged", len(msgs), len(stored))
	}
	for _, m := range msgs {
		body, err := readBody(ctx, r, acc.Id, inbox, m.Uid, 0, 0)
		if err != nil || !stored[string(body)] {
			t.Fatalf("UID %d: %q (%v)", m.Uid, body, err)
		}
		delete(stored, string(body)) // a second copy would not find it
	}
}

// An alias moves from account to account through replica a while senders
// deliver to it through replica b, whose directory answers come from its
// cache: every delivery lands in an account that owned the alias at some
// moment while the delivery ran, never in one that had lost it before the
// delivery began, and every acknowledged message is in that account's
// INBOX exactly once. A quarter of the way in, etcd restarts under the
// watch.
func TestRecipientCacheUnderConcurrentAliasMoves(t *testing.T) {
	c := newCluster(t, options{driver: "fs", replicas: 2})
	a, b := c.replicas[0], c.replicas[1]
	ctx := ctxT(t)
	const owners = 4
	var accounts []*storagev1.Account
	for i := range owners {
		accounts = append(accounts, setupAccount(t, a, fmt.Sprintf("owner%d@example.test", i), 0, 0))
	}
	if _, err := a.Accounts.AddAlias(ctx, &storagev1.AddAliasRequest{Alias: "shared@example.test", AccountId: accounts[0].Id}); err != nil {
		t.Fatal(err)
	}

	// The alias's owners in turn. Each change commits at some moment while
	// its call runs, so an owner may hold the alias from when AddAlias was
	// called (from) until RemoveAlias returned (lostBy; zero: still owner).
	type tenure struct {
		account      string
		from, lostBy time.Time
	}
	var mu sync.Mutex
	tenures := []*tenure{{account: accounts[0].Id, from: time.Now()}}
	stop := make(chan struct{})
	moverDone := make(chan error, 1)
	go func() {
		for i := 1; ; i++ {
			select {
			case <-stop:
				moverDone <- nil
				return
			case <-time.After(100 * time.Millisecond):
			}
			next := accounts[i%owners].Id
			// Retried while etcd restarts; a retry of a change that did
			// land finds it done.
			if err := retryTemporary(func() error {
				_, err := a.Accounts.RemoveAlias(ctx, &storagev1.RemoveAliasRequest{Alias: "shared@example.test"})
				if storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_ACCOUNT_NOT_FOUND {
					return nil
				}
				return err
			}); err != nil {
				moverDone <- err
				return
			}
			mu.Lock()
			tenures[len(tenures)-1].lostBy = time.Now()
			mu.Unlock()
			addCalled := time.Now()
			if err := retryTemporary(func() error {
				_, err := a.Accounts.AddAlias(ctx, &storagev1.AddAliasRequest{Alias: "shared@example.test", AccountId: next})
				if storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_ADDRESS_EXISTS {
					return nil
				}
				return err
			}); err != nil {
				moverDone <- err
				return
			}
			mu.Lock()
			tenures = append(tenures, &tenure{account: next, from: addCalled})
			mu.Unlock()
		}
	}()

	type delivery struct {
		body       string
		account    string
		start, end time.Time
	}
	var deliveries []delivery
	refused := map[storagev1.RecipientResult_Status]int{}
	failedCalls := 0 // temporary errors of the whole call (etcd restarting)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	const senders, perSender = 8, 25
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			made := 0
			moves := func() int { mu.Lock(); defer mu.Unlock(); return len(tenures) - 1 }
			// Until this sender made its share and the alias has moved a
			// few times (a fast machine could finish before the first moves).
			for i := 0; made < perSender || moves() < 5; i++ {
				if i == 50*perSender {
					errs <- fmt.Errorf("sender %d: %d of %d deliveries made in %d tries", s, made, perSender, i)
					return
				}
				body := message(s*100000+i, 1500)
				start := time.Now()
				resp, err := deliver(ctx, b, []string{"shared@example.test"}, body)
				end := time.Now()
				if err != nil {
					if storagev1.IsTemporary(err) {
						mu.Lock()
						failedCalls++
						mu.Unlock()
						continue // etcd restarting: the sender retries later
					}
					errs <- err
					return
				}
				r := resp.Results[0]
				switch r.Status {
				case storagev1.RecipientResult_STATUS_DELIVERED:
					made++
					mu.Lock()
					deliveries = append(deliveries, delivery{string(body), r.AccountId, start, end})
					mu.Unlock()
				case storagev1.RecipientResult_STATUS_UNKNOWN_USER, storagev1.RecipientResult_STATUS_TEMPORARY_FAILURE:
					// Between RemoveAlias and AddAlias there is no owner;
					// a cache behind the move gives a temporary failure.
					mu.Lock()
					refused[r.Status]++
					mu.Unlock()
				default:
					errs <- fmt.Errorf("delivery %d/%d: %v", s, i, r)
					return
				}
			}
		}()
	}
	// etcd restarts once a quarter of the deliveries are made.
	for {
		mu.Lock()
		n := len(deliveries)
		mu.Unlock()
		if n >= senders*perSender/4 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	member := c.etcd.Members[0]
	member.Stop()
	if err := member.Start(); err != nil {
		t.Fatal(err)
	}
	if err := member.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(stop)
	if err := <-moverDone; err != nil {
		t.Fatalf("moving the alias: %v", err)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(tenures) < 5 {
		t.Fatalf("the alias moved %d times during %d deliveries: too few to test anything", len(tenures)-1, len(deliveries))
	}

	// Every delivery went to an account that may have owned the alias at
	// some moment during it: its AddAlias called before the delivery ended,
	// its RemoveAlias not yet returned when the delivery began. A delivery
	// that began after RemoveAlias returned must not reach that account.
	for _, d := range deliveries {
		ok := false
		for _, tn := range tenures {
			if tn.account == d.account && tn.from.Before(d.end) && (tn.lostBy.IsZero() || tn.lostBy.After(d.start)) {
				ok = true
				break
			}
		}
		if !ok {
			t.Fatalf("a delivery from %s to %s went to account %s, which did not own the alias meanwhile", d.start.Format(time.StampMicro), d.end.Format(time.StampMicro), d.account)
		}
	}
	// And each acknowledged message is in that INBOX, once.
	want := map[string]string{}
	for _, d := range deliveries {
		want[d.body] = d.account
	}
	got := 0
	for _, acc := range accounts {
		inbox := mailboxID(t, a, acc.Id, "INBOX")
		_, msgs := listAll(t, a, acc.Id, inbox)
		for _, m := range msgs {
			body, err := readBody(ctx, a, acc.Id, inbox, m.Uid, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			owner, acked := want[string(body)]
			if acked && owner != acc.Id {
				t.Fatalf("a message acknowledged for account %s is in %s's INBOX", owner, acc.Id)
			}
			if acked {
				delete(want, string(body))
				got++
			}
		}
	}
	if len(want) != 0 {
		t.Fatalf("%d acknowledged messages are missing (%d found)", len(want), got)
	}
	t.Logf("%d deliveries over %d moves of the alias; refused per recipient: %v; calls failed while etcd restarted: %d", len(deliveries), len(tenures)-1, refused, failedCalls)
}

// retryTemporary calls fn until it succeeds or fails with a permanent
// error, for up to 30 seconds.
func retryTemporary(fn func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := fn()
		if err == nil || !storagev1.IsTemporary(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
