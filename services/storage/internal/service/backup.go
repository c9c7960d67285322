package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/blobstore"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
)

// Backup and restore of a whole cell (mailctl backup / restore).
//
// A backup is every durable key under the cell's prefix read at one etcd
// revision R, then every body that R references (and its summary). It is
// consistent while mail flows because:
//   - a message acknowledged before R has its entry at R, and its body was
//     stored before the entry's transaction, so it is in the store;
//   - a body referenced at R is deleted only by the sweeper, after its last
//     reference went away and the sweep grace passed; while a backup runs it
//     holds holds/<id> on its own etcd lease and the sweeper deletes nothing
//     (sweeper.go), so every body R needs is still there when it is copied.
//
// Keys on an etcd lease (upload intents, locks, queue leases, failed-login
// counters, holds) die with their owner and are left out: a restored cell
// starts with none, as after every replica restarted.

// backupChunk is the size of one data message of an object.
const backupChunk = 256 << 10

// holdSweeper puts a hold on a fresh lease, kept alive until release. The
// revision of the put is returned: everything the sweeper could delete
// after it is on hold. The returned context ends if the lease is lost
// (etcd unreachable for longer than its TTL): the work it guarded must
// stop then, its guarantee gone.
func (s *Server) holdSweeper(ctx context.Context) (held context.Context, rev int64, release func(), err error) {
	grant, err := s.etcd.Grant(ctx, uploadLeaseTTL)
	if err != nil {
		return nil, 0, nil, err
	}
	aliveCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	alive, err := s.etcd.KeepAlive(aliveCtx, grant.ID)
	if err != nil {
		stop()
		return nil, 0, nil, err
	}
	held, lost := context.WithCancelCause(ctx)
	go func() {
		for range alive {
		}
		if aliveCtx.Err() == nil {
			lost(errors.New("the backup's hold on the sweeper was lost (etcd lease expired)"))
		}
	}()
	put, err := s.etcd.Put(ctx, s.keys.Hold(newID()), "", clientv3.WithLease(grant.ID))
	if err != nil {
		stop()
		lost(err)
		return nil, 0, nil, err
	}
	return held, put.Header.Revision, func() {
		stop()
		lost(context.Canceled)
		revokeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.etcd.Revoke(revokeCtx, grant.ID)
	}, nil
}

// heldStatus is the status for err from work under a hold: the lost hold
// when that is why it stopped (the caller's own end is not).
func heldStatus(held, caller context.Context, err error) error {
	if held.Err() != nil && caller.Err() == nil {
		return fail(reasonTemporary, "%v", context.Cause(held))
	}
	return toStatus(err)
}

// sweeperHeld reports whether a backup or restore holds the sweeper.
func (s *Server) sweeperHeld(ctx context.Context) (bool, error) {
	resp, err := s.etcd.Get(ctx, s.keys.Holds(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	return resp.Count > 0, nil
}

func (s *Server) Backup(req *storagev1.BackupRequest, stream storagev1.MaintenanceService_BackupServer) error {
	ctx, rev, release, err := s.holdSweeper(stream.Context())
	if err != nil {
		return toStatus(err)
	}
	defer release()
	s.log.Info("backup started", "revision", rev)

	// The keys, in batches of at most 1 MiB.
	var bodies []string
	batch := &storagev1.BackupKeys{}
	size, keys := 0, uint64(0)
	flush := func() error {
		if len(batch.Kvs) == 0 {
			return nil
		}
		err := stream.Send(&storagev1.BackupPart{Part: &storagev1.BackupPart_Keys{Keys: batch}})
		batch, size = &storagev1.BackupKeys{}, 0
		return err
	}
	err = s.scanAt(ctx, s.keys.Prefix, rev, func(kv *mvccpb.KeyValue) error {
		if kv.Lease != 0 {
			return nil
		}
		rel := strings.TrimPrefix(string(kv.Key), s.keys.Prefix)
		if body, ok := strings.CutPrefix(string(kv.Key), s.keys.Bodies()); ok {
			bodies = append(bodies, body)
		}
		if size+len(rel)+len(kv.Value) > etcdtx.MaxBytes/2 {
			if err := flush(); err != nil {
				return err
			}
		}
		batch.Kvs = append(batch.Kvs, &storagev1.BackupKeyValue{Key: []byte(rel), Value: kv.Value})
		size += len(rel) + len(kv.Value)
		keys++
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return heldStatus(ctx, stream.Context(), err)
	}
	manifest := &storagev1.BackupManifest{Revision: rev, Prefix: s.keys.Prefix, Keys: keys, Objects: uint64(len(bodies))}
	if err := stream.Send(&storagev1.BackupPart{Part: &storagev1.BackupPart_Manifest{Manifest: manifest}}); err != nil {
		return err
	}

	// The objects: each body's summary (if it has one yet), then the body.
	// Objects are read ahead in parallel, and sent in order.
	missing := 0
	err = s.fetchInOrder(ctx, bodies, func(o *fetchedObject) error {
		if o.err != nil {
			return o.err
		}
		if o.size < 0 {
			if !o.summary {
				missing++
				s.log.Error("backup: a referenced body is missing from the store (see mailctl fsck)", "body", o.key)
			}
			return nil
		}
		return o.send(stream)
	})
	if err != nil {
		return heldStatus(ctx, stream.Context(), err)
	}
	s.log.Info("backup done", "revision", rev, "keys", keys, "bodies", len(bodies), "missing", missing)
	return nil
}

// Reading objects ahead: up to backupReaders at once, each object of up to
// backupSmall bytes held in memory whole, larger ones streamed when their
// turn comes.
const (
	backupReaders = 8
	backupSmall   = 1 << 20
)

// fetchedObject is one object read ahead.
type fetchedObject struct {
	key     string
	summary bool
	size    int64         // -1: not stored
	data    []byte        // the whole object, or its first part if rest is set
	rest    io.ReadCloser // the remainder of a large object
	err     error
}

// fetchInOrder reads the summary and the body of each key, several at once,
// and hands them to fn in order.
func (s *Server) fetchInOrder(ctx context.Context, bodies []string, fn func(*fetchedObject) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type job struct {
		o    *fetchedObject
		done chan struct{}
	}
	jobs := make(chan job)
	ordered := make(chan job, 2*backupReaders)
	for range backupReaders {
		go func() {
			for j := range jobs {
				s.fetchObject(ctx, j.o)
				close(j.done)
			}
		}()
	}
	go func() {
		defer close(ordered)
		defer close(jobs)
		for _, key := range bodies {
			for _, o := range []*fetchedObject{{key: summaryKey(key), summary: true}, {key: key}} {
				j := job{o: o, done: make(chan struct{})}
				select {
				case ordered <- j:
				case <-ctx.Done():
					return
				}
				select {
				case jobs <- j:
				case <-ctx.Done():
					j.o.err = ctx.Err() // queued but never fetched
					close(j.done)
					return
				}
			}
		}
	}()
	var err error
	for j := range ordered {
		<-j.done
		if err == nil {
			err = fn(j.o)
		}
		if j.o.rest != nil {
			j.o.rest.Close()
		}
		if err != nil {
			cancel() // the rest is drained, and closed
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// fetchObject reads o: whole if small, else its first part and an open
// reader of the rest.
func (s *Server) fetchObject(ctx context.Context, o *fetchedObject) {
	if o.summary {
		// Kept with its body (summary.go), it is written out as the
		// object of its own it would otherwise be. (A failed HEAD falls
		// back to that object, as a reader does.)
		if a, _ := s.blobs.Attachment(ctx, strings.TrimPrefix(o.key, summaryPrefix)); a != nil {
			o.data, o.size = a, int64(len(a))
			return
		}
	}
	r, err := s.blobs.Get(ctx, o.key, 0, 0)
	if errors.Is(err, blobstore.ErrNotFound) {
		o.size = -1
		return
	}
	if err != nil {
		o.err = err
		return
	}
	var buf bytes.Buffer // grows to the object's size: most are small
	n, err := io.CopyN(&buf, r, backupSmall+1)
	switch {
	case err == io.EOF:
		r.Close()
		o.data, o.size = buf.Bytes(), n
	case err != nil:
		r.Close()
		o.err = err
	default:
		info, err := s.blobs.Stat(ctx, o.key)
		if err != nil {
			r.Close()
			o.err = err
			return
		}
		o.data, o.rest, o.size = buf.Bytes(), r, info.Size
	}
}

// send streams o: its header, then its data in chunks.
func (o *fetchedObject) send(stream storagev1.MaintenanceService_BackupServer) error {
	if err := stream.Send(&storagev1.BackupPart{Part: &storagev1.BackupPart_Object{
		Object: &storagev1.BackupObject{Key: o.key, Size: o.size}}}); err != nil {
		return err
	}
	sent := int64(0)
	emit := func(p []byte) error {
		for len(p) > 0 {
			n := min(len(p), backupChunk)
			if err := stream.Send(&storagev1.BackupPart{Part: &storagev1.BackupPart_Chunk{Chunk: p[:n]}}); err != nil {
				return err
			}
			sent += int64(n)
			p = p[n:]
		}
		return nil
	}
	if err := emit(o.data); err != nil {
		return err
	}
	if o.rest != nil {
		buf := make([]byte, backupChunk)
		for {
			n, err := io.ReadFull(o.rest, buf)
			if n > 0 {
				if err := emit(buf[:n]); err != nil {
					return err
				}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				return err
			}
		}
	}
	if sent != o.size {
		return fmt.Errorf("object %s: read %d of %d bytes", o.key, sent, o.size)
	}
	return nil
}

func (s *Server) Restore(stream storagev1.MaintenanceService_RestoreServer) error {
	ctx := stream.Context()
	for _, prefix := range []string{s.keys.Domains(), s.keys.Accounts()} {
		resp, err := s.etcd.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return toStatus(err)
		}
		if resp.Count > 0 {
			return status.Error(codes.FailedPrecondition, "restore needs an empty cell: this one has domains or accounts")
		}
	}
	ctx, _, release, err := s.holdSweeper(ctx)
	if err != nil {
		return toStatus(err)
	}
	defer release()

	var out storagev1.RestoreResponse
	puts := newPutter(s, ctx)
	var obj *objectWriter
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			puts.abort(obj, err)
			return err
		}
		if err := puts.failed(); err != nil {
			puts.abort(obj, err)
			return toStatus(err)
		}
		switch p := req.Part.(type) {
		case *storagev1.BackupPart_Keys:
			if obj != nil || out.Objects > 0 {
				puts.abort(obj, errors.New("keys after objects"))
				return errInvalid("keys after objects")
			}
			put, kept, err := s.restoreKeys(ctx, p.Keys.Kvs)
			if err != nil {
				puts.abort(obj, err)
				return toStatus(err)
			}
			out.Keys += put
			out.KeysKept += kept
		case *storagev1.BackupPart_Manifest:
			s.log.Info("restore started", "from_revision", p.Manifest.Revision, "keys", p.Manifest.Keys, "bodies", p.Manifest.Objects)
		case *storagev1.BackupPart_Object:
			if err := puts.finish(obj); err != nil {
				puts.abort(nil, err)
				return toStatus(err)
			}
			if err := blobstore.ValidKey(p.Object.Key); err != nil || p.Object.Size < 0 {
				puts.abort(nil, err)
				return errInvalid("invalid object %q (%d bytes) in a backup", p.Object.Key, p.Object.Size)
			}
			obj = puts.start(p.Object.Key, p.Object.Size)
			out.Objects++
		case *storagev1.BackupPart_Chunk:
			if obj == nil {
				puts.abort(nil, nil)
				return errInvalid("data before an object header")
			}
			if err := obj.write(p.Chunk); err != nil {
				puts.abort(obj, err)
				return toStatus(err)
			}
		default:
			puts.abort(obj, nil)
			return errInvalid("empty restore message")
		}
	}
	if err := puts.finish(obj); err != nil {
		puts.abort(nil, err)
		return toStatus(err)
	}
	if err := puts.wait(); err != nil {
		return toStatus(err)
	}
	s.log.Info("restore done", "keys", out.Keys, "kept", out.KeysKept, "objects", out.Objects)
	return stream.SendAndClose(&out)
}

// restoreKeys writes kvs (relative to the prefix) that do not exist yet.
func (s *Server) restoreKeys(ctx context.Context, kvs []*storagev1.BackupKeyValue) (put, kept uint64, err error) {
	for len(kvs) > 0 {
		// Each batch is read and written in budgeted transactions.
		n, size := 0, 0
		for n < len(kvs) && n < etcdtx.MaxOps && size+len(kvs[n].Key)+len(kvs[n].Value) < etcdtx.MaxBytes/2 {
			size += len(kvs[n].Key) + len(kvs[n].Value)
			n++
		}
		n = max(n, 1)
		batch := kvs[:n]
		kvs = kvs[n:]
		var gets []clientv3.Op
		for _, kv := range batch {
			if len(kv.Key) == 0 || leaseScoped(string(kv.Key)) {
				return put, kept, errInvalid("invalid key %q in a backup (keys that live on etcd leases are never in one)", kv.Key)
			}
			gets = append(gets, clientv3.OpGet(s.keys.Prefix+string(kv.Key), clientv3.WithCountOnly()))
		}
		resp, err := s.etcd.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return put, kept, err
		}
		var puts []clientv3.Op
		var cmps []clientv3.Cmp
		for i, kv := range batch {
			if resp.Responses[i].GetResponseRange().Count > 0 {
				kept++
				continue
			}
			key := s.keys.Prefix + string(kv.Key)
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
			puts = append(puts, clientv3.OpPut(key, string(kv.Value)))
		}
		if len(puts) == 0 {
			continue
		}
		txn, err := s.etcd.Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			return put, kept, err
		}
		if !txn.Succeeded {
			return put, kept, errors.New("keys appeared in the target while restoring")
		}
		put += uint64(len(puts))
	}
	return put, kept, nil
}

// putter writes restored objects into the body store: small ones are
// gathered in memory and stored by up to backupReaders goroutines at once,
// large ones stream through a pipe as they arrive.
type putter struct {
	s     *Server
	ctx   context.Context
	slots chan struct{}
	wg    sync.WaitGroup

	summary *objectWriter // a small summary held for the body that follows it

	mu  sync.Mutex
	err error
}

func newPutter(s *Server, ctx context.Context) *putter {
	return &putter{s: s, ctx: ctx, slots: make(chan struct{}, backupReaders)}
}

func (p *putter) setErr(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
}

// failed returns the first error of a background store.
func (p *putter) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// leaseScoped reports whether key (relative to the prefix) is one that
// only ever exists on an etcd lease: restored without one it would never
// go away (an intent keeps its body forever, a lock is held by nobody).
func leaseScoped(key string) bool {
	for _, p := range []string{"holds/", "uploads/", "locks/", "queue/leases/", "loginfail/"} {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return strings.Contains(key, "/locks/") && strings.HasPrefix(key, "accounts/")
}

// objectWriter is one object being restored.
type objectWriter struct {
	key  string
	size int64
	got  int64
	buf  []byte         // a small object, gathered whole
	pw   *io.PipeWriter // a large one, streaming
	done chan error
}

func (p *putter) start(key string, size int64) *objectWriter {
	w := &objectWriter{key: key, size: size}
	if size <= backupSmall {
		w.buf = make([]byte, 0, size)
		return w
	}
	p.store(p.summary, nil) // a large body keeps its summary apart
	p.summary = nil
	pr, pw := io.Pipe()
	w.pw, w.done = pw, make(chan error, 1)
	go func() {
		n, err := p.s.blobs.Put(p.ctx, key, pr)
		if err == nil && n != size {
			err = fmt.Errorf("object %s: stored %d of %d bytes", key, n, size)
		}
		pr.CloseWithError(err)
		w.done <- err
	}()
	return w
}

func (w *objectWriter) write(data []byte) error {
	w.got += int64(len(data))
	if w.got > w.size {
		return errInvalid("object %s: more data than its announced %d bytes", w.key, w.size)
	}
	if w.pw == nil {
		w.buf = append(w.buf, data...)
		return nil
	}
	_, err := w.pw.Write(data)
	return err
}

// finish completes w (nil: nothing to do): a large object is stored when
// this returns, a small one is handed to a background store.
func (p *putter) finish(w *objectWriter) error {
	if w == nil {
		return nil
	}
	if w.got != w.size {
		if w.pw != nil { // the store must not wait for the rest forever
			w.pw.CloseWithError(errors.New("short object"))
			<-w.done
		}
		return errInvalid("object %s: %d of its %d bytes sent", w.key, w.got, w.size)
	}
	if w.pw != nil {
		w.pw.Close()
		return <-w.done
	}
	// A summary comes just before its body: it is held, to go with the
	// body's own PUT if the driver can keep it there.
	summary := p.summary
	p.summary = nil
	if strings.HasPrefix(w.key, summaryPrefix) {
		p.store(summary, nil)
		p.summary = w
		return nil
	}
	if summary != nil && summary.key != summaryKey(w.key) {
		p.store(summary, nil)
		summary = nil
	}
	p.store(w, summary)
	return nil
}

// store puts the small object w (nil: nothing) in the background, with
// summary (nil: none) attached if the driver can, else as its own object.
func (p *putter) store(w, summary *objectWriter) {
	if w == nil {
		return
	}
	p.slots <- struct{}{}
	p.wg.Add(1)
	go func() {
		defer func() { <-p.slots; p.wg.Done() }()
		var attach func() []byte
		if summary != nil {
			attach = func() []byte { return summary.buf }
		}
		_, attached, err := p.s.blobs.PutAttached(p.ctx, w.key, bytes.NewReader(w.buf), attach)
		if err == nil && summary != nil && !attached {
			w = summary
			_, err = p.s.blobs.Put(p.ctx, w.key, bytes.NewReader(w.buf))
		}
		if err != nil {
			p.setErr(fmt.Errorf("object %s: %w", w.key, err))
		}
	}()
}

// wait waits for the background stores and returns the first error.
func (p *putter) wait() error {
	p.store(p.summary, nil)
	p.summary = nil
	p.wg.Wait()
	return p.failed()
}

// abort ends a streaming object with err (the store keeps nothing of a
// failed Put) and waits for the background stores.
func (p *putter) abort(w *objectWriter, err error) {
	if w != nil && w.pw != nil {
		if err == nil {
			err = errors.New("restore aborted")
		}
		w.pw.CloseWithError(err)
		<-w.done
	}
	p.wg.Wait()
}
