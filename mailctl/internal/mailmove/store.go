package mailmove

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailfleet/mailfleet/pkg/storeclient"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Batches: AppendMessages takes at most 10 000 messages a stream; the
// storage tier splits a batch into etcd transactions itself. A batch is
// all or nothing, so its size is also what a retry or resume redoes.
const (
	batchMessages = 1000
	batchBytes    = 64 << 20
	chunkSize     = 64 << 10
)

// Store is one account on the storage API, as the admin identity.
type Store struct {
	Mailboxes storagev1.MailboxServiceClient
	Messages  storagev1.MessageServiceClient
	AccountID string
	// Warn receives warnings (flags that could not be kept).
	Warn func(string)
}

// OpenStore finds the account by address.
func OpenStore(ctx context.Context, conn grpc.ClientConnInterface, address string) (*Store, error) {
	acc, err := storagev1.NewAccountServiceClient(conn).GetAccount(ctx, &storagev1.GetAccountRequest{Address: address})
	if err != nil {
		return nil, err
	}
	return &Store{
		Mailboxes: storagev1.NewMailboxServiceClient(conn),
		Messages:  storagev1.NewMessageServiceClient(conn),
		AccountID: acc.Account.Id,
		Warn:      func(string) {},
	}, nil
}

// EnsureMailbox returns the mailbox called name, creating it (and its
// parents) if it is missing, and subscribes it when asked.
func (s *Store) EnsureMailbox(ctx context.Context, name string, subscribed bool, use storagev1.SpecialUse) (*storagev1.Mailbox, error) {
	if strings.EqualFold(name, "INBOX") {
		name = "INBOX"
	}
	get, err := s.Mailboxes.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: s.AccountID, Name: name})
	switch {
	case err == nil:
	case storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_MAILBOX_NOT_FOUND:
		created, cerr := s.Mailboxes.CreateMailbox(ctx, &storagev1.CreateMailboxRequest{AccountId: s.AccountID, Name: name, SpecialUse: use, Subscribed: subscribed})
		if cerr == nil {
			return created.Mailbox, nil
		}
		// Created meanwhile by someone else: use it.
		if get, err = s.Mailboxes.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: s.AccountID, Name: name}); err != nil {
			return nil, fmt.Errorf("creating mailbox %s: %w", name, cerr)
		}
	default:
		return nil, fmt.Errorf("mailbox %s: %w", name, err)
	}
	if subscribed && !get.Mailbox.Subscribed {
		if _, err := s.Mailboxes.SetSubscribed(ctx, &storagev1.SetSubscribedRequest{AccountId: s.AccountID, Name: name, Subscribed: true}); err != nil {
			return nil, err
		}
	}
	return get.Mailbox, nil
}

// Append appends msgs to a mailbox as one change (AppendMessages): all of
// them or none, with consecutive UIDs in this order.
func (s *Store) Append(ctx context.Context, mailboxID string, msgs []Message) (*storagev1.AppendMessagesResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // an error before CloseAndRecv abandons the stream: nothing is appended
	stream, err := s.Messages.AppendMessages(ctx)
	if err != nil {
		return nil, err
	}
	send := func(req *storagev1.AppendMessagesRequest) error {
		if err := stream.Send(req); err != nil {
			if errors.Is(err, io.EOF) { // the server answered early: its answer says why
				_, err = stream.CloseAndRecv()
			}
			return err
		}
		return nil
	}
	if err := send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Target_{
		Target: &storagev1.AppendMessagesRequest_Target{AccountId: s.AccountID, MailboxId: mailboxID}}}); err != nil {
		return nil, err
	}
	buf := make([]byte, chunkSize)
	for _, m := range msgs {
		flags, dropped := cleanFlags(m.Flags)
		if len(dropped) > 0 {
			s.Warn(fmt.Sprintf("%s: flags not kept: %s", m.Source, strings.Join(dropped, " ")))
		}
		start := &storagev1.AppendMessagesRequest_Start{Flags: flags}
		if m.Size > 0 {
			start.SizeHint = uint64(m.Size)
		}
		if !m.Date.IsZero() {
			start.InternalDate = timestamppb.New(m.Date)
		}
		if err := send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Start_{Start: start}}); err != nil {
			return nil, err
		}
		body, err := m.Open()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Source, err)
		}
		for {
			n, rerr := io.ReadFull(body, buf)
			if n > 0 {
				chunk := &storagev1.BodyChunk{Data: append([]byte(nil), buf[:n]...)}
				if err := send(&storagev1.AppendMessagesRequest{Part: &storagev1.AppendMessagesRequest_Chunk{Chunk: chunk}}); err != nil {
					body.Close()
					return nil, err
				}
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				body.Close()
				return nil, fmt.Errorf("%s: %w", m.Source, rerr)
			}
		}
		body.Close()
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	if len(resp.Uids) != len(msgs) {
		return nil, fmt.Errorf("append: %d UIDs for %d messages", len(resp.Uids), len(msgs))
	}
	return resp, nil
}

// Batcher collects messages and appends them in batches.
type Batcher struct {
	s         *Store
	mailboxID string
	pending   []Message
	bytes     int64
	// Before is called before each batch is appended (nil: nothing).
	Before func(msgs []Message) error
	// Done is called after each committed batch with its messages.
	Done func(msgs []Message, resp *storagev1.AppendMessagesResponse) error
}

// NewBatcher appends to one mailbox.
func (s *Store) NewBatcher(mailboxID string) *Batcher {
	return &Batcher{s: s, mailboxID: mailboxID, Done: func([]Message, *storagev1.AppendMessagesResponse) error { return nil }}
}

// Add queues a message, appending the batch when it is full.
func (b *Batcher) Add(ctx context.Context, m Message) error {
	if len(b.pending) > 0 && (len(b.pending) >= batchMessages || b.bytes+max(m.Size, 0) > batchBytes) {
		if err := b.Flush(ctx); err != nil {
			return err
		}
	}
	b.pending = append(b.pending, m)
	b.bytes += max(m.Size, 0)
	return nil
}

// Flush appends what is queued.
func (b *Batcher) Flush(ctx context.Context) error {
	if len(b.pending) == 0 {
		return nil
	}
	if b.Before != nil {
		if err := b.Before(b.pending); err != nil {
			return err
		}
	}
	resp, err := b.s.Append(ctx, b.mailboxID, b.pending)
	if err != nil {
		return err
	}
	crashHook()
	msgs := b.pending
	b.pending, b.bytes = nil, 0
	return b.Done(msgs, resp)
}

// Mailboxes lists the account's mailboxes.
func (s *Store) List(ctx context.Context) (*storagev1.ListMailboxesResponse, error) {
	return s.Mailboxes.ListMailboxes(ctx, &storagev1.ListMailboxesRequest{AccountId: s.AccountID})
}

// EachMessage calls fn for every message of a mailbox in UID order, as of
// one consistent revision.
func (s *Store) EachMessage(ctx context.Context, mailboxID string, afterUID uint32, fn func(*storagev1.Message) error) error {
	var rev int64
	for {
		resp, err := s.Messages.ListMessages(ctx, &storagev1.ListMessagesRequest{AccountId: s.AccountID, MailboxId: mailboxID, AfterUid: afterUID, Revision: rev, Limit: 1000})
		if err != nil {
			return err
		}
		rev = resp.Revision
		for _, m := range resp.Messages {
			if err := fn(m); err != nil {
				return err
			}
		}
		if !resp.More {
			return nil
		}
		afterUID = resp.NextAfterUid
	}
}

// Body streams a message's body.
func (s *Store) Body(ctx context.Context, mailboxID string, uid uint32) (io.ReadCloser, error) {
	return storeclient.MessageBodyReader(ctx, s.Messages, s.AccountID, mailboxID, uid, 0, 0)
}
