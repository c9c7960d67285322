// Package maildrop is the POP3 maildrop on the storage tier: INBOX, locked
// cluster-wide for the session.
package maildrop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/mailfleet/mailfleet/pkg/storeclient"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
	"github.com/mailfleet/mailfleet/services/access/internal/pop3"
)

// POP3 is the pop3.Backend on the storage tier: the maildrop is the
// account's INBOX, locked cluster-wide with a storage account lock.
type POP3 struct {
	Client  *storeclient.Client
	LockTTL time.Duration
	Log     *slog.Logger
}

var _ pop3.Backend = (*POP3)(nil)

// Authenticate checks the credentials with the storage tier; the login
// carries the user's storage session.
func (p *POP3) Authenticate(ctx context.Context, user, pass, clientIP string) (pop3.Login, error) {
	resp, err := p.Client.Accounts.Authenticate(ctx, &storagev1.AuthenticateRequest{Username: user, Password: pass, ClientIp: clientIP})
	switch storagev1.ReasonOf(err) {
	case storagev1.ErrorReason_ERROR_REASON_AUTH_FAILED:
		return pop3.Login{}, pop3.ErrAuthFailed
	case storagev1.ErrorReason_ERROR_REASON_LOGIN_LOCKED:
		return pop3.Login{}, pop3.ErrLocked
	}
	if err != nil {
		return pop3.Login{}, err
	}
	return pop3.Login{Account: resp.Account.Id, Credential: p.Client.NewSession(resp)}, nil
}

const maildropLock = "maildrop"

// Open locks the maildrop, keeps the lock alive, and snapshots INBOX.
func (p *POP3) Open(ctx context.Context, login pop3.Login) (pop3.Maildrop, error) {
	account, session := login.Account, login.Credential.(*storeclient.Session)
	ctx = storeclient.WithSession(ctx, session)
	ttl := max(p.LockTTL, 3*time.Second)
	lock, err := p.Client.Accounts.LockAccount(ctx, &storagev1.LockAccountRequest{
		AccountId: account, Name: maildropLock, TtlSeconds: uint32(ttl / time.Second)})
	if storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_IN_USE {
		return nil, pop3.ErrInUse
	}
	if err != nil {
		return nil, err
	}
	d := &maildrop{p: p, account: account, session: session, lockID: lock.LockId, stop: make(chan struct{}), stopped: make(chan struct{})}
	if err := d.snapshot(ctx); err != nil {
		d.unlock()
		return nil, err
	}
	go d.keepAlive(ttl / 3)
	return d, nil
}

type maildrop struct {
	p       *POP3
	account string
	session *storeclient.Session // calls act for the user
	lockID  int64
	inbox   string
	uids    []uint32
	infos   []pop3.MessageInfo

	mu       sync.Mutex
	lockLost bool
	stop     chan struct{}
	stopped  chan struct{}
	once     sync.Once
}

func (d *maildrop) snapshot(ctx context.Context) error {
	mb, err := d.p.Client.Mailboxes.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: d.account, Name: "INBOX"})
	if err != nil {
		return err
	}
	d.inbox = mb.Mailbox.Id
	req := &storagev1.ListMessagesRequest{AccountId: d.account, MailboxId: d.inbox, Limit: 5000}
	for {
		resp, err := d.p.Client.Messages.ListMessages(ctx, req)
		if err != nil {
			return err
		}
		for _, m := range resp.Messages {
			size := m.CrlfSize
			if size == 0 {
				size = m.Size
			}
			d.uids = append(d.uids, m.Uid)
			// UIDVALIDITY.UID: unique and stable across sessions and pods
			// (RFC 1939 7: printable ASCII, at most 70 characters).
			d.infos = append(d.infos, pop3.MessageInfo{UID: fmt.Sprintf("%d.%d", resp.Mailbox.UidValidity, m.Uid), Size: size})
		}
		if !resp.More {
			return nil
		}
		req.AfterUid, req.Revision = resp.NextAfterUid, resp.Revision
	}
}

// keepAlive renews the lock until Close; a lost lock forbids deletions.
func (d *maildrop) keepAlive(every time.Duration) {
	defer close(d.stopped)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(d.storageCtx(context.Background()), every)
		_, err := d.p.Client.Accounts.RenewAccountLock(ctx, &storagev1.RenewAccountLockRequest{LockId: d.lockID, AccountId: d.account, Name: maildropLock})
		cancel()
		if storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_LEASE_LOST {
			d.mu.Lock()
			d.lockLost = true
			d.mu.Unlock()
			d.p.Log.Warn("POP3 maildrop lock lost; deletions of this session will be refused", "account", d.account)
			return
		}
		if err != nil {
			d.p.Log.Warn("renewing the POP3 maildrop lock failed; retrying", "account", d.account, "err", err)
		}
	}
}

func (d *maildrop) Messages() []pop3.MessageInfo { return d.infos }

// storageCtx returns ctx whose storage calls act for the user.
func (d *maildrop) storageCtx(ctx context.Context) context.Context {
	return storeclient.WithSession(ctx, d.session)
}

func (d *maildrop) Body(ctx context.Context, i int) (io.ReadCloser, error) {
	return d.p.Client.BodyReader(d.storageCtx(ctx), d.account, d.inbox, d.uids[i], 0, 0)
}

// Delete expunges the messages; POP3 deletions are IMAP expunges.
func (d *maildrop) Delete(ctx context.Context, idx []int) error {
	d.mu.Lock()
	lost := d.lockLost
	d.mu.Unlock()
	if lost {
		return errors.New("maildrop lock lost: another session may own the maildrop")
	}
	var uids []uint32
	for _, i := range idx {
		uids = append(uids, d.uids[i])
	}
	sort.Slice(uids, func(a, b int) bool { return uids[a] < uids[b] })
	_, err := d.p.Client.Messages.ExpungeMessages(d.storageCtx(ctx), &storagev1.ExpungeMessagesRequest{
		AccountId: d.account, MailboxId: d.inbox, Uids: storeclient.UIDSetOf(uids), IgnoreDeletedFlag: true})
	return err
}

func (d *maildrop) Close() error {
	d.once.Do(func() { close(d.stop) })
	<-d.stopped
	return d.unlock()
}

func (d *maildrop) unlock() error {
	ctx, cancel := context.WithTimeout(d.storageCtx(context.Background()), 10*time.Second)
	defer cancel()
	_, err := d.p.Client.Accounts.UnlockAccount(ctx, &storagev1.UnlockAccountRequest{AccountId: d.account, Name: maildropLock, LockId: d.lockID})
	return err
}
