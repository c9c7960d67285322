package imapd

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/emersion/go-imap/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
)

// appendTx is one APPEND command, with one message or several (RFC 3502
// MULTIAPPEND), on one AppendMessages stream: the storage tier uploads each
// body as it arrives and commits the index entries of all of them in one
// change when the stream closes, or none if the stream breaks (the
// connection dropped, a message failed). Only the chunk in flight is in
// memory here.
type appendTx struct {
	s      *session
	stream storagev1.MessageService_AppendMessagesClient
	cancel context.CancelFunc
	n      int
	err    error // the first failure: the command appends nothing
	done   bool
}

var _ imapconn.AppendTx = (*appendTx)(nil)

// RFC 9051 6.3.12 APPEND, RFC 3502 MULTIAPPEND.
func (s *session) BeginAppend(name string) (imapconn.AppendTx, error) {
	// Its deadline is longer than a command's: the client may upload slowly.
	ctx, cancel := context.WithTimeout(s.base(), max(s.srv.cfg.CommandTimeout, 10*time.Minute))
	stream, err := s.srv.store.Messages.AppendMessages(ctx)
	if err != nil {
		cancel()
		return nil, appendError(err)
	}
	t := &appendTx{s: s, stream: stream, cancel: cancel}
	// The storage tier resolves the name itself: one call for the APPEND.
	target := &storagev1.AppendMessagesRequest_Target{AccountId: s.account.Id, MailboxName: name}
	if err := stream.Send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Target_{Target: target}}); err != nil {
		return t, t.fail()
	}
	return t, nil
}

// fail ends the stream after a Send failed: the storage tier's answer says
// why.
func (t *appendTx) fail() error {
	_, err := t.stream.CloseAndRecv()
	if err == nil {
		err = errors.New("append stream closed early without an error")
	}
	t.err = appendError(err)
	t.Abort()
	return t.err
}

// appendError is the IMAP answer to a failed APPEND.
func appendError(err error) error {
	if storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_MAILBOX_NOT_FOUND {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	return mapError(err)
}

func (t *appendTx) Add(r imap.LiteralReader, options *imap.AppendOptions) error {
	if t.err != nil {
		return t.err
	}
	if t.done {
		return errors.New("append: message added after the end")
	}
	start := &storagev1.AppendMessagesRequest_Start{SizeHint: uint64(r.Size())}
	if options != nil {
		start.Flags = storeFlags(options.Flags)
		if !options.Time.IsZero() {
			start.InternalDate = timestamppb.New(options.Time)
		}
	}
	if err := t.stream.Send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Start_{Start: start}}); err != nil {
		return t.fail()
	}
	t.n++
	buf := make([]byte, 64<<10)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			chunk := &storagev1.BodyChunk{Data: append([]byte(nil), buf[:n]...)}
			if err := t.stream.Send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Chunk{Chunk: chunk}}); err != nil {
				// The storage tier answered early (too large, mailbox
				// gone): its answer comes from CloseAndRecv.
				return t.fail()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			// The connection broke mid-literal: nothing is appended.
			t.err = rerr
			t.Abort()
			return rerr
		}
	}
}

func (t *appendTx) Commit() (*imapconn.AppendResult, error) {
	if t.err != nil {
		return nil, t.err
	}
	if t.n == 0 {
		return nil, errors.New("append: no message")
	}
	resp, err := t.stream.CloseAndRecv()
	t.done = true
	t.cancel()
	if err != nil {
		t.err = appendError(err)
		return nil, t.err
	}
	s := t.s
	if v := s.selected; v != nil && v.state.id == resp.MailboxId {
		v.state.waitModseq(resp.Modseq, selfWait)
	} else {
		s.markOwn(ownMark{kind: ownStatus, id: resp.MailboxId, modseq: resp.Modseq})
	}
	res := &imapconn.AppendResult{UIDValidity: resp.UidValidity}
	for _, uid := range resp.Uids {
		res.UIDs.AddNum(imap.UID(uid))
	}
	s.log.Info("appended", "mailbox", resp.MailboxId, "uids", res.UIDs.String(), "messages", len(resp.Uids))
	return res, nil
}

// Abort cancels the stream: the storage tier sees it break and appends
// nothing (it frees the bodies it uploaded).
func (t *appendTx) Abort() {
	if !t.done {
		t.done = true
		t.cancel()
	}
}
