package main

// The etcd-bytes mode measures what one stored message costs in etcd once
// history is compacted and the database defragmented: the figure that sets
// how many users a cell holds (docs/sizing.md).

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/mailfleet/mailfleet/pkg/mailcorpus"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/blobstore"
	"github.com/mailfleet/mailfleet/services/storage/testing/engines"
)

// corpus is a named message generator.
type corpus struct {
	name    string
	message func(i int) []byte
}

// cellState is what etcd holds under the prefix at one moment, after
// compaction and defragmentation.
type cellState struct {
	dbSize   int64
	families map[string]family
}

// family is the keys of one kind (messages, bodies, …) and their bytes.
type family struct {
	keys  int
	bytes int64 // key and value lengths
}

func runEtcdBytes(n, clients int, seed int64, only string) error {
	dir, err := os.MkdirTemp("", "mailfleet-bench-etcd-bytes-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	host, _ := os.Hostname()
	fmt.Printf("etcd bytes per message: %s, %s/%s, %d CPUs, host %s; N=%d messages into one mailbox, %d clients\n",
		time.Now().UTC().Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), host, n, clients)
	fmt.Println("each corpus on a fresh single-member etcd; sizes after compaction at the current revision and defragmentation")
	// Bodies go to the body store, not etcd; capping them at mailcorpus's
	// smallest cap keeps the headers and MIME structure (what the index
	// entry holds) and keeps the run short.
	gen := mailcorpus.NewWithOptions(mailcorpus.Options{Seed: seed, MaxSize: mailcorpus.MinMaxSize})
	corpora := []corpus{
		{"mailcorpus", gen.Message},
		{"synthetic, 1 recipient", synthetic(1)},
		{"synthetic, 10 recipients", synthetic(10)},
	}
	if only != "" {
		names := map[string]string{"mailcorpus": "mailcorpus", "1": "synthetic, 1 recipient", "10": "synthetic, 10 recipients"}
		var kept []corpus
		for _, c := range corpora {
			if c.name == names[only] {
				kept = append(kept, c)
			}
		}
		if len(kept) == 0 {
			return fmt.Errorf("-corpus %q: want mailcorpus, 1 or 10", only)
		}
		corpora = kept
	}
	type result struct {
		name             string
		empty, full, raw cellState
		bodyBytes        int64
		summaryBytes     int64 // summary objects in the body store
		took             time.Duration
		etcdVersion      string
	}
	var results []result
	for i, c := range corpora {
		r := result{name: c.name}
		start := time.Now()
		r.empty, r.raw, r.full, r.bodyBytes, r.etcdVersion, err = fillCell(fmt.Sprintf("%s/%d", dir, i), c, n, clients)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		r.took = time.Since(start)
		if r.summaryBytes, err = dirBytes(fmt.Sprintf("%s/%d/fs/objects/summaries", dir, i)); err != nil {
			return err
		}
		results = append(results, r)
	}
	fmt.Printf("etcd %s\n\n", results[0].etcdVersion)
	fmt.Printf("%-26s %10s %14s %10s %10s %10s %14s %17s %17s\n",
		"corpus", "keys added", "body bytes/msg", "db empty", "db raw", "db full", "etcd bytes/msg", "logical bytes/msg", "summary bytes/msg")
	for _, r := range results {
		keys, logical := delta(r.empty, r.full)
		fmt.Printf("%-26s %10d %14d %10d %10d %10d %14.0f %17.0f %17.0f\n",
			r.name, keys, r.bodyBytes/int64(n), r.empty.dbSize, r.raw.dbSize, r.full.dbSize,
			float64(r.full.dbSize-r.empty.dbSize)/float64(n), float64(logical)/float64(n), float64(r.summaryBytes)/float64(n))
	}
	keys, logical := delta(cellState{}, results[0].empty)
	fmt.Printf("\nthe empty cell (one domain, one account and its default folders): %d keys, %d bytes of keys and values\n", keys, logical)
	fmt.Println("\nkeys added per family (key+value bytes per message):")
	for _, r := range results {
		fmt.Printf("  %s (%s):\n", r.name, r.took.Round(time.Second))
		var names []string
		for name := range r.full.families {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			f, e := r.full.families[name], r.empty.families[name]
			if f.keys == e.keys && f.bytes == e.bytes {
				continue
			}
			fmt.Printf("    %-28s %8d keys %12d bytes %10.1f bytes/msg\n", name, f.keys-e.keys, f.bytes-e.bytes, float64(f.bytes-e.bytes)/float64(n))
		}
	}
	fmt.Println("\ndb empty: the cell with one account; db raw: after the fill, before compaction (history included);")
	fmt.Println("db full: after compaction and defragmentation. etcd bytes/msg = (db full − db empty) / N;")
	fmt.Println("logical bytes/msg = key and value bytes added / N (what etcd stores before its own overhead).")
	fmt.Println("summary bytes/msg = the envelope and MIME tree kept per body in the body store (not in etcd), / N.")
	return nil
}

// fillCell starts a fresh etcd and storage tier, measures the empty cell,
// appends n messages of c to one mailbox and measures again.
func fillCell(dir string, c corpus, n, clients int) (empty, raw, full cellState, bodyBytes int64, version string, err error) {
	ctx := context.Background()
	etcd, err := engines.StartEtcd(dir+"/etcd", 1)
	if err != nil {
		return
	}
	defer etcd.Stop()
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), Logger: zap.NewNop()})
	if err != nil {
		return
	}
	defer cli.Close()
	blobs, err := blobstore.NewFS(dir + "/fs")
	if err != nil {
		return
	}
	const prefix = "/mailfleet/v1/"
	conn, stop, err := startStorage(cli, prefix, blobs)
	if err != nil {
		return
	}
	defer stop()
	accounts := storagev1.NewAccountServiceClient(conn)
	mailboxes := storagev1.NewMailboxServiceClient(conn)
	msgs := storagev1.NewMessageServiceClient(conn)
	if _, err = accounts.CreateDomain(ctx, &storagev1.CreateDomainRequest{Name: "example.test"}); err != nil {
		return
	}
	acc, err := accounts.CreateAccount(ctx, &storagev1.CreateAccountRequest{Address: "user@example.test", Password: "bench-secret"})
	if err != nil {
		return
	}
	mb, err := mailboxes.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: acc.Account.Id, Name: "INBOX"})
	if err != nil {
		return
	}
	endpoint := etcd.Endpoints()[0]
	if empty, err = measureCell(ctx, cli, endpoint, prefix, true); err != nil {
		return
	}

	var next, total atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				body := c.message(i)
				if err := appendOnce(ctx, msgs, acc.Account.Id, mb.Mailbox.Id, body); err != nil {
					errs <- fmt.Errorf("message %d: %w", i, err)
					return
				}
				total.Add(int64(len(body)))
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err = <-errs; err != nil {
		return
	}
	if raw, err = measureCell(ctx, cli, endpoint, prefix, false); err != nil {
		return
	}
	if full, err = measureCell(ctx, cli, endpoint, prefix, true); err != nil {
		return
	}
	st, err := cli.Status(ctx, endpoint)
	if err != nil {
		return
	}
	return empty, raw, full, total.Load(), st.Version, nil
}

// measureCell reads the database size and every key under prefix; with
// compact it first compacts at the current revision and defragments, as the
// cell's steady state looks once history has aged out.
func measureCell(ctx context.Context, cli *clientv3.Client, endpoint, prefix string, compact bool) (cellState, error) {
	s := cellState{families: map[string]family{}}
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return s, err
	}
	if compact {
		_, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical())
		if err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
			return s, err
		}
		if _, err := cli.Defragment(ctx, endpoint); err != nil {
			return s, err
		}
	}
	for _, kv := range resp.Kvs {
		name := familyOf(strings.TrimPrefix(string(kv.Key), prefix))
		f := s.families[name]
		f.keys++
		f.bytes += int64(len(kv.Key) + len(kv.Value))
		s.families[name] = f
	}
	st, err := cli.Status(ctx, endpoint)
	if err != nil {
		return s, err
	}
	s.dbSize = st.DbSize
	return s, nil
}

// familyOf names a key's kind: its first path element, and for keys of an
// account the element after the account id ("accounts/*/messages").
func familyOf(key string) string {
	parts := strings.SplitN(key, "/", 4)
	if parts[0] == "accounts" && len(parts) >= 3 {
		return "accounts/*/" + parts[2]
	}
	return parts[0]
}

// delta is the keys and key+value bytes added from a to b.
func delta(a, b cellState) (keys int, bytes int64) {
	for _, f := range b.families {
		keys += f.keys
		bytes += f.bytes
	}
	for _, f := range a.families {
		keys -= f.keys
		bytes -= f.bytes
	}
	return keys, bytes
}

// synthetic returns a generator of simple text messages (about 2 KB) with
// rcpts recipients, the shape of much person-to-person mail.
func synthetic(rcpts int) func(i int) []byte {
	return func(i int) []byte {
		var to []string
		for r := range rcpts {
			to = append(to, fmt.Sprintf("Recipient Number%d <recipient%d@example.test>", r, r))
		}
		date := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 17 * time.Minute)
		head := fmt.Sprintf("From: Sender %d <sender%d@example.org>\r\nTo: %s\r\nSubject: Quarterly report, part %d\r\nDate: %s\r\nMessage-ID: <%d.%d@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
			i%97, i%97, strings.Join(to, ",\r\n "), i, date.Format(time.RFC1123Z), i, rcpts)
		return append([]byte(head), strings.Repeat(fmt.Sprintf("Line of text of message %d, as people write it.\r\n", i), 40)...)
	}
}

// dirBytes sums the sizes of the files under dir.
func dirBytes(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			total += info.Size()
		}
		return err
	})
	return total, err
}
