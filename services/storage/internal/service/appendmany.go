package service

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/storage/internal/etcdtx"
)

// maxAppendMany bounds the messages of one AppendMessages stream: their
// index entries wait in memory until the commit.
const maxAppendMany = 10000

// AppendMessages appends a stream of messages to one mailbox as one change.
// Every body is uploaded first (each under its upload intent), so that the
// mailbox is held only for the etcd part: one transaction when the entries
// fit, else a staging (staging.go) published at once.
func (s *Server) AppendMessages(stream storagev1.MessageService_AppendMessagesServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return toStatus(err)
	}
	target := first.GetTarget()
	if target == nil {
		return errInvalid("the first request must name the mailbox")
	}
	meta := &storagev1.AppendMessageRequest_Metadata{AccountId: target.AccountId, MailboxId: target.MailboxId, MailboxName: target.MailboxName}
	mailboxID, err := s.appendPrecheck(ctx, meta)
	if err != nil {
		return toStatus(err)
	}

	var msgs []*storagev1.Message
	// One holder per message, written by its upload (in the background
	// for small bodies): the holders stay put while the slice grows.
	var uploads []*uploadResult
	pool := &intentPool{s: s}
	defer pool.release()
	// Bodies of up to appendSmall bytes are read off the stream whole and
	// stored by up to appendUploaders goroutines while the next ones
	// arrive: the body store's latency per object no longer bounds an
	// import. Larger ones stream straight into the store.
	bg := &backgroundUploads{slots: make(chan struct{}, appendUploaders)}
	discardAll := func() {
		bg.wait()
		for _, r := range uploads {
			if r.up != nil {
				s.discardBody(r.up.key)
			}
		}
	}
	// The announced sizes are checked against the quota (read once, at
	// the first) before each body is read, so that a full account costs
	// no upload, as AppendMessage's precheck; the commit checks again.
	var quota *storagev1.Quota
	var announced uint64
	req, err := stream.Recv()
	for err == nil {
		start := req.GetStart()
		if start == nil {
			discardAll()
			return errInvalid("each message must begin with a start")
		}
		if len(msgs) == maxAppendMany {
			discardAll()
			return errInvalid("more than %d messages in one stream", maxAppendMany)
		}
		flags, ferr := normalizeFlags(start.Flags)
		if ferr == nil && start.SizeHint > uint64(s.cfg.MaxMessageSize) {
			ferr = fail(reasonTooLarge, "message larger than %d bytes", s.cfg.MaxMessageSize)
		}
		if ferr == nil && start.SizeHint > 0 {
			announced += start.SizeHint
			if quota == nil {
				quota, ferr = s.readQuota(ctx, target.AccountId)
			}
			if ferr == nil {
				ferr = checkQuota(quota, announced, uint64(len(msgs)+1))
			}
			if ferr != nil {
				ferr = toStatus(ferr)
			}
		}
		if ferr == nil {
			ferr = bg.failed()
		}
		if ferr != nil {
			discardAll()
			return ferr
		}
		// The body runs until the next start or the end of the stream.
		var nextStart *storagev1.AppendMessagesRequest
		key, kerr := pool.next(ctx)
		if kerr != nil {
			discardAll()
			return toStatus(kerr)
		}
		fromStream := func() ([]byte, error) {
			r, err := stream.Recv()
			if err != nil {
				return nil, err
			}
			if r.GetStart() != nil {
				nextStart = r
				return nil, io.EOF
			}
			if r.GetChunk() == nil {
				return nil, errInvalid("a message's body must come in chunks")
			}
			return r.GetChunk().Data, nil
		}
		result := &uploadResult{}
		msgs = append(msgs, &storagev1.Message{Flags: flags, InternalDate: timestamppb.New(timeOr(start.InternalDate, time.Now())), BodyKey: key})
		uploads = append(uploads, result)
		chunks, whole, rerr := readSmall(fromStream, appendSmall)
		switch {
		case rerr != nil:
			s.discardBody(key) // nothing stored yet: its intent goes
			discardAll()
			return toStatus(rerr)
		case whole:
			bg.start(func() error {
				up, err := s.receiveBodyAs(ctx, key, replay(chunks, nil))
				result.up = up
				return err
			})
		default:
			up, uerr := s.receiveBodyAs(ctx, key, replay(chunks, fromStream))
			if uerr != nil {
				discardAll()
				return uerr
			}
			result.up = up
		}
		if nextStart == nil {
			break // the stream ended with this message
		}
		req, err = nextStart, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		discardAll()
		return toStatus(err)
	}
	if err := bg.wait(); err != nil {
		discardAll()
		return err
	}
	ups := make([]*upload, len(msgs))
	for i, m := range msgs {
		up := uploads[i].up
		m.Size, m.HeaderSize, m.CrlfSize = up.size, up.headerSize, up.crlfSize
		ups[i] = up
	}

	resp, staged, err := s.commitAppends(ctx, meta.AccountId, mailboxID, msgs, ups)
	if err != nil {
		if !etcdtx.IsUncertain(err) {
			// Bodies a staging referenced are freed with its entries (the
			// sweeper deletes them); the others go now.
			for _, up := range ups[staged:] {
				s.discardBody(up.key)
			}
		}
		return toStatus(err)
	}
	return stream.SendAndClose(resp)
}

// appendCost is what one appended message costs a step: its entry, its
// reference record, its intent's compare and delete.
func (s *Server) appendCost(account, mailboxID string, m *storagev1.Message) (ops, bytes int) {
	intent := len(s.keys.Upload(m.BodyKey)) + opCost
	return 3, s.entryCost(account, mailboxID, m) + 64 + len(s.keys.Body(m.BodyKey)) + opCost + 48 + 2*intent
}

// stageAppend stages one uploaded message's entry under uid with modseq, its
// new reference record and the end of its intent.
func (s *Server) stageAppend(tx *etcdtx.Tx, account, mailboxID string, m *storagev1.Message, up *upload) error {
	if err := s.newBodyRef(tx, up, 1); err != nil {
		return err
	}
	s.finishUpload(tx, up)
	m.SaveDate = timestamppb.Now() // RFC 8514 SAVEDATE
	tx.Put(s.keys.Message(account, mailboxID, m.Uid), encodeEntry(m))
	return nil
}

// commitAppends commits uploaded messages into a mailbox as one change and
// returns the answer, or how many of the uploads a failed staging had
// referenced already.
func (s *Server) commitAppends(ctx context.Context, account, mailboxID string, msgs []*storagev1.Message, uploads []*upload) (*storagev1.AppendMessagesResponse, int, error) {
	out := &storagev1.AppendMessagesResponse{MailboxId: mailboxID}
	var bytes, unseen uint64
	ops, size := stepReserveOps, stepReserveBytes
	for _, m := range msgs {
		o, b := s.appendCost(account, mailboxID, m)
		ops, size = ops+o, size+b
		bytes += m.Size
		if !hasFlag(m.Flags, `\Seen`) {
			unseen++
		}
	}
	n := uint64(len(msgs))

	// All in one transaction when it fits.
	if ops <= etcdtx.MaxOps && size <= etcdtx.MaxBytes {
		_, err := s.commitWaiting(ctx, account, func(tx *etcdtx.Tx) error {
			out.Uids = nil
			q, err := s.loadQuota(tx, account)
			if err != nil {
				return err
			}
			mb, err := s.loadMailbox(tx, account, mailboxID)
			if err != nil {
				return err
			}
			if err := checkWritable(account, mb, ""); err != nil {
				return err
			}
			if err := checkQuota(q, bytes, n); err != nil {
				return err
			}
			if uint64(mb.UidNext)+n >= 1<<32 {
				return fail(reasonTooMany, "mailbox has run out of UIDs")
			}
			modseq := mb.HighestModseq + 1
			for i, m := range msgs {
				m.Uid, m.Modseq = mb.UidNext+uint32(i), modseq
				if err := s.stageAppend(tx, account, mailboxID, m, uploads[i]); err != nil {
					return err
				}
				out.Uids = append(out.Uids, m.Uid)
			}
			if n > 0 {
				mb.UidNext += uint32(n)
				mb.HighestModseq = modseq
			}
			mb.Messages += uint32(n)
			mb.Size += bytes
			mb.Unseen += uint32(unseen)
			q.UsedBytes += bytes
			q.UsedMessages += n
			s.saveMailbox(tx, account, mb)
			s.saveQuota(tx, account, q)
			out.UidValidity, out.Modseq = mb.UidValidity, mb.HighestModseq
			return nil
		})
		return out, 0, err
	}

	// Else staged, step by step, and published at once.
	if err := s.quotaRoom(ctx, account, bytes, n); err != nil {
		return nil, 0, err
	}
	opID, validity, err := s.takeStaging(ctx, account, mailboxID)
	if err != nil {
		return nil, 0, err
	}
	staged := 0
	abort := func(cause error) (*storagev1.AppendMessagesResponse, int, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		if err := s.discardStaged(rctx, account, mailboxID, opID); err != nil {
			s.log.Error("could not take back a failed append's staged entries; they expire", "account", account, "mailbox", mailboxID, "err", err)
		}
		return nil, staged, cause
	}
	for staged < len(msgs) {
		var took int
		_, err := s.committer.do(ctx, account, func(tx *etcdtx.Tx) error {
			took = 0
			if _, err := s.loadQuota(tx, account); err != nil {
				return err // the account is gone, or going
			}
			mb, err := s.loadMailbox(tx, account, mailboxID)
			if err != nil {
				return err
			}
			st := mb.GetStaging()
			if st.GetOpId() != opID {
				return fail(reasonTemporary, "the append lost its staging (it took too long)")
			}
			ops, bytes := tx.Room()
			ops, bytes = ops-stepReserveOps, bytes-stepReserveBytes
			for i := staged; i < len(msgs); i++ {
				o, b := s.appendCost(account, mailboxID, msgs[i])
				if o > ops || b > bytes {
					break
				}
				ops, bytes = ops-o, bytes-b
				if st.NextUid == ^uint32(0) {
					return fail(reasonTooMany, "mailbox has run out of UIDs")
				}
				msgs[i].Uid, msgs[i].Modseq = st.NextUid, st.Modseq
				st.NextUid++
				if err := s.stageAppend(tx, account, mailboxID, msgs[i], uploads[i]); err != nil {
					return err
				}
				took++
			}
			if took == 0 {
				return errDeferred
			}
			st.Expires = timestamppb.New(time.Now().Add(s.cfg.StagingTTL))
			s.saveMailbox(tx, account, mb)
			return nil
		})
		if err != nil {
			return abort(err)
		}
		staged += took
	}
	if err := s.publishStaging(ctx, account, mailboxID, opID, bytes, n, unseen, true, nil); err != nil {
		return abort(err)
	}
	out.UidValidity = validity
	for _, m := range msgs {
		out.Uids = append(out.Uids, m.Uid)
		out.Modseq = m.Modseq
	}
	return out, staged, nil
}

// Background body uploads of AppendMessages.
const (
	appendUploaders = 8
	appendSmall     = 1 << 20
)

// readSmall reads a body from next until its end, or until it passes limit
// bytes (whole is false then, and the rest is still to be read from next).
func readSmall(next func() ([]byte, error), limit int) (chunks [][]byte, whole bool, err error) {
	size := 0
	for size <= limit {
		data, err := next()
		if err == io.EOF {
			return chunks, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		chunks = append(chunks, data)
		size += len(data)
	}
	return chunks, false, nil
}

// replay returns chunks one by one, then what rest returns (io.EOF if nil).
func replay(chunks [][]byte, rest func() ([]byte, error)) func() ([]byte, error) {
	return func() ([]byte, error) {
		if len(chunks) > 0 {
			c := chunks[0]
			chunks = chunks[1:]
			return c, nil
		}
		if rest == nil {
			return nil, io.EOF
		}
		return rest()
	}
}

// uploadResult is where one message's upload leaves its result (nil until
// it succeeded).
type uploadResult struct{ up *upload }

// backgroundUploads runs uploads a few at a time and keeps the first error.
type backgroundUploads struct {
	slots chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
}

func (b *backgroundUploads) start(upload func() error) {
	b.slots <- struct{}{}
	b.wg.Add(1)
	go func() {
		defer func() { <-b.slots; b.wg.Done() }()
		if err := upload(); err != nil {
			b.mu.Lock()
			if b.err == nil {
				b.err = err
			}
			b.mu.Unlock()
		}
	}()
}

// failed returns the first error so far.
func (b *backgroundUploads) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// wait waits for every upload and returns the first error.
func (b *backgroundUploads) wait() error {
	b.wg.Wait()
	return b.failed()
}
