package integration

import (
	"context"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// appendMany appends bodies to a mailbox in one AppendMessages stream; those
// for which seen(i) holds are \Seen (seen may be nil).
func appendMany(ctx context.Context, r *replica, account, mailboxID string, bodies [][]byte, seen func(i int) bool) (*storagev1.AppendMessagesResponse, error) {
	stream, err := r.Messages.AppendMessages(ctx)
	if err != nil {
		return nil, err
	}
	send := func(req *storagev1.AppendMessagesRequest) bool { return stream.Send(req) == nil }
	ok := send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Target_{Target: &storagev1.AppendMessagesRequest_Target{
		AccountId: account, MailboxId: mailboxID}}})
	for i, body := range bodies {
		start := &storagev1.AppendMessagesRequest_Start{SizeHint: uint64(len(body))}
		if seen != nil && seen(i) {
			start.Flags = []string{`\Seen`}
		}
		ok = ok && send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Start_{Start: start}})
		for off := 0; ok && off < len(body); off += 16 << 10 {
			ok = send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Chunk{Chunk: &storagev1.BodyChunk{Data: body[off:min(off+16<<10, len(body))]}}})
		}
	}
	return stream.CloseAndRecv() // says why if a send failed
}

// AppendMessages (MULTIAPPEND, imports) appends every message or none:
// consecutive UIDs in stream order, one modseq, exact bytes back; one that
// does not fit in the quota leaves nothing behind.
func TestAppendMessages(t *testing.T) {
	c := newCluster(t, options{driver: "fs"})
	r := c.replicas[0]
	ctx := ctxT(t)
	acc := setupAccount(t, r, "many@example.test", 0, 0)
	inbox := mailboxID(t, r, acc.Id, "INBOX")
	cli := c.etcdClient()
	count := func(prefix string) int64 {
		resp, err := cli.Get(ctx, keyPrefix+prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}

	for _, n := range []int{3, 1500} { // one transaction; a staging
		var bodies [][]byte
		for i := 0; i < n; i++ {
			bodies = append(bodies, message(i, 300+i%2000))
		}
		before, _ := listAll(t, r, acc.Id, inbox)
		resp, err := appendMany(ctx, r, acc.Id, inbox, bodies, func(i int) bool { return i%3 == 0 })
		if err != nil {
			t.Fatalf("%d messages: %v", n, err)
		}
		if len(resp.Uids) != n || resp.UidValidity != before.UidValidity || resp.Modseq <= before.HighestModseq {
			t.Fatalf("%d messages: %d UIDs, validity %d, modseq %d (before %d)", n, len(resp.Uids), resp.UidValidity, resp.Modseq, before.HighestModseq)
		}
		for i, uid := range resp.Uids {
			if uid != before.UidNext+uint32(i) {
				t.Fatalf("message %d got UID %d, want %d", i, uid, before.UidNext+uint32(i))
			}
		}
		mb, msgs := listAll(t, r, acc.Id, inbox)
		if int(mb.Messages) != len(msgs) || mb.UidNext != before.UidNext+uint32(n) {
			t.Fatalf("after %d: MESSAGES %d, listed %d, UIDNEXT %d", n, mb.Messages, len(msgs), mb.UidNext)
		}
		for _, i := range []int{0, n / 2, n - 1} {
			got, err := readBody(ctx, r, acc.Id, inbox, resp.Uids[i], 0, 0)
			if err != nil || string(got) != string(bodies[i]) {
				t.Fatalf("message %d of %d reads back wrong (%v)", i, n, err)
			}
		}
	}
	if n := count("uploads/"); n != 0 {
		t.Fatalf("%d upload intents left", n)
	}

	// Over quota: nothing of the stream stays.
	q := getQuota(t, r, acc.Id)
	setQuota(t, r, acc.Id, 0, q.UsedMessages+1000)
	refs := count("bodies/")
	var bodies [][]byte
	for i := 0; i < 1200; i++ {
		bodies = append(bodies, message(i, 400))
	}
	before, _ := listAll(t, r, acc.Id, inbox)
	if _, err := appendMany(ctx, r, acc.Id, inbox, bodies, nil); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_OVER_QUOTA {
		t.Fatalf("1200 over a room of 1000: %v, want OVER_QUOTA", err)
	}
	after, _ := listAll(t, r, acc.Id, inbox)
	if after.Messages != before.Messages || count("bodies/") != refs || count("uploads/") != 0 {
		t.Fatalf("a refused append left something: MESSAGES %d→%d, refs %d→%d, intents %d", before.Messages, after.Messages, refs, count("bodies/"), count("uploads/"))
	}

	// A stream that breaks the protocol gets InvalidArgument.
	stream, err := r.Messages.AppendMessages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Target_{Target: &storagev1.AppendMessagesRequest_Target{AccountId: acc.Id, MailboxId: inbox}}})
	stream.Send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Chunk{Chunk: &storagev1.BodyChunk{Data: []byte("x")}}})
	if _, err := stream.CloseAndRecv(); storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT {
		t.Fatalf("a chunk before any start: %v, want INVALID_ARGUMENT", err)
	}
}
