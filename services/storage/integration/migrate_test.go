package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/mailfleet/mailfleet/pkg/mailcorpus"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// A cell upgraded from index version 1 (every entry a whole storage.v1
// Message with its envelope, no summary objects) keeps working at once and
// is migrated by the sweeper's replica: entries become version 2, every
// body gets its summary object, and what ListMessages answers (flags,
// sizes, dates, envelopes, MIME trees) is the same before, during and after.
func TestIndexV1EntriesAreReadAndMigrated(t *testing.T) {
	const n = 60
	// No sweeps at first: the version 1 layout must be served as it is.
	c := newCluster(t, options{extraArgs: []string{"--sweep-interval", "1h"}})
	r := c.replicas[0]
	ctx := ctxT(t)
	acc := setupAccount(t, r, "upgrade@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	corpus := mailcorpus.NewWithOptions(mailcorpus.Options{Seed: 7, MaxSize: 256 << 10})
	for i := 0; i < n; i++ {
		flags := []string{}
		if i%3 == 0 {
			flags = append(flags, `\Seen`, "$Label1")
		}
		if _, err := appendMsg(ctx, r, acc.Id, inbox, corpus.Message(i), flags...); err != nil {
			t.Fatal(err)
		}
	}
	list := func() []*storagev1.Message {
		t.Helper()
		var out []*storagev1.Message
		req := &storagev1.ListMessagesRequest{AccountId: acc.Id, MailboxId: inbox, IncludeEnvelope: true, IncludeStructure: true}
		for {
			resp, err := r.Messages.ListMessages(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, resp.Messages...)
			if !resp.More {
				return out
			}
			req.AfterUid, req.Revision = resp.NextAfterUid, resp.Revision
		}
	}
	want := list()
	if len(want) != n {
		t.Fatalf("listed %d messages, want %d", len(want), n)
	}
	for _, m := range want {
		if m.Envelope == nil || m.Structure == nil || m.Structure.Type == "" {
			t.Fatalf("UID %d listed without its envelope or structure: %v", m.Uid, m)
		}
	}

	// Turn the cell into what version 1 left: entries with envelopes, no
	// summaries, no migration mark.
	cli := c.etcdClient()
	prefix := "/mailfleet/v1/"
	for _, m := range want {
		v1 := proto.Clone(m).(*storagev1.Message)
		v1.Structure = nil
		key := fmt.Sprintf("%saccounts/%s/messages/%s/%010d", prefix, acc.Id, inbox, m.Uid)
		if _, err := cli.Put(ctx, key, string(mustMarshal(t, v1))); err != nil {
			t.Fatal(err)
		}
	}
	removeSummaries(t, c)
	if _, err := cli.Delete(ctx, prefix+"migrations/index-v2"); err != nil {
		t.Fatal(err)
	}
	if bodies, summaries := c.objectCounts(); bodies != n || summaries != 0 {
		t.Fatalf("%d bodies and %d summaries after the rewind, want %d and 0", bodies, summaries, n)
	}
	if v1 := countV1(t, cli, prefix+"accounts/"+acc.Id+"/messages/"); v1 != n {
		t.Fatalf("%d version 1 entries after the rewind, want %d", v1, n)
	}

	// Served as they are: the same answers, summaries computed on demand.
	assertSameListing(t, want, list())
	// A change to a version 1 entry writes it as version 2.
	if _, err := r.Messages.StoreFlags(ctx, &storagev1.StoreFlagsRequest{AccountId: acc.Id, MailboxId: inbox,
		Uids: uids(2, 2), Op: storagev1.StoreFlagsRequest_OP_ADD, Flags: []string{`\Flagged`}}); err != nil {
		t.Fatal(err)
	}
	want = list()
	if got := want[1].Flags; len(got) != 1 || got[0] != `\Flagged` {
		t.Fatalf("UID 2 flags %v after STORE, want [\\Flagged]", got)
	}

	// Drop the cached summaries and let the sweeper migrate.
	removeSummaries(t, c)
	r.stop(9)
	r.args = append(r.args, "--sweep-interval", "200ms")
	r.start()
	deadline := time.Now().Add(60 * time.Second)
	for {
		v1 := countV1(t, cli, prefix+"accounts/"+acc.Id+"/messages/")
		mark, err := cli.Get(ctx, prefix+"migrations/index-v2", clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if v1 == 0 && mark.Count == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("migration not finished: %d version 1 entries left, mark %d", v1, mark.Count)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The migration made the summaries of the entries it rewrote; UID 2,
	// rewritten by its STORE before, gets its own when first read.
	if bodies, summaries := c.objectCounts(); bodies != n || summaries != n-1 {
		t.Fatalf("%d bodies and %d summaries after the migration, want %d and %d", bodies, summaries, n, n-1)
	}
	assertSameListing(t, want, list())
	if bodies, summaries := c.objectCounts(); bodies != n || summaries != n {
		t.Fatalf("%d bodies and %d summaries after reading them all, want %d each", bodies, summaries, n)
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// countV1 counts the entries under prefix in the version 1 layout (a
// protobuf message; version 2 starts with the byte 0x02).
func countV1(t *testing.T, cli *clientv3.Client, prefix string) int {
	t.Helper()
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	v1 := 0
	for _, kv := range resp.Kvs {
		if len(kv.Value) == 0 || kv.Value[0] != 0x02 {
			v1++
		}
	}
	return v1
}

// removeSummaries takes every summary out of the cluster's bucket, both the
// summary objects and those carried by bodies (S3 user metadata): the
// bucket as index version 1 left it.
func removeSummaries(t *testing.T, c *cluster) {
	t.Helper()
	mc, err := minioServer.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for o := range mc.ListObjects(ctx, c.bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if strings.HasPrefix(o.Key, "summaries/") {
			if err := mc.RemoveObject(ctx, c.bucket, o.Key, minio.RemoveObjectOptions{}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		// A body carrying its summary (S3 user metadata): copied onto
		// itself without it, as version 1 stored bodies.
		dst := minio.CopyDestOptions{Bucket: c.bucket, Object: o.Key, ReplaceMetadata: true, UserMetadata: map[string]string{}}
		if _, err := mc.CopyObject(ctx, dst, minio.CopySrcOptions{Bucket: c.bucket, Object: o.Key}); err != nil {
			t.Fatal(err)
		}
	}
}

func assertSameListing(t *testing.T, want, got []*storagev1.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("listed %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(want[i], got[i]) {
			t.Fatalf("UID %d differs:\n got  %v\n want %v", want[i].Uid, got[i], want[i])
		}
	}
}
