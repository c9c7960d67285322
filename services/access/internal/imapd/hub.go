// Package imapd is the IMAP4rev2 server of the access tier: the sessions
// behind imapconn's protocol layer, over the storage API.
//
// Implementation notes — the rules a change here must keep:
//   - A pod keeps, per account with sessions on it, one storage Watch stream
//     (accountHub) and, per selected mailbox, one shared mailboxState: the
//     ordered UIDs and flags, and the imapconn MailboxTracker that turns
//     changes into per-session EXISTS/EXPUNGE/FETCH updates.
//   - mailboxState changes only from the Watch stream (or a resync after
//     compaction), never from a session's own command: every change, from
//     this pod or any other, reaches every session the same way. A session
//     that changed something waits until the state has caught up with the
//     modseq the storage tier answered, so it sees its own writes.
//   - mailboxState.mu is held only for memory work, never across an RPC.
package imapd

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/mailfleet/mailfleet/pkg/storeclient"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// Hub is the per-pod registry of watched accounts.
type Hub struct {
	store *storeclient.Client
	log   *slog.Logger

	mu       sync.Mutex
	accounts map[string]*accountHub
}

// NewHub returns an empty hub.
func NewHub(store *storeclient.Client, log *slog.Logger) *Hub {
	return &Hub{store: store, log: log, accounts: map[string]*accountHub{}}
}

// accountHub is one account's watch stream and its loaded mailboxes.
type accountHub struct {
	hub    *Hub
	id     string
	refs   int
	ready  chan struct{} // closed once the watch runs (or failed to start)
	err    error
	cancel context.CancelFunc

	mu        sync.Mutex
	mailboxes map[string]*mailboxState
	sessions  int

	// session is the user's credential towards storage, shared by every
	// IMAP session of the account on this pod and kept fresh while the
	// watch runs.
	session *storeclient.Session

	// NOTIFY (notify.go): the sessions that asked for events of mailboxes
	// they have not selected, and the mailboxes' names and subscriptions
	// (nil while no session has NOTIFY; dirLoading is closed when a load
	// ends, dirBuffered holds the changes seen meanwhile).
	notifyMu    sync.Mutex
	notifiers   map[*notifyState]struct{}
	dir         map[string]dirEntry
	dirLoading  chan struct{}
	dirBuffered []*storagev1.Change
}

// acquire returns the hub of the account login authenticated, starting its
// watch if it is new.
func (h *Hub) acquire(ctx context.Context, login *storagev1.AuthenticateResponse) (*accountHub, error) {
	account := login.Account.Id
	h.mu.Lock()
	a, ok := h.accounts[account]
	if !ok {
		a = &accountHub{hub: h, id: account, ready: make(chan struct{}), mailboxes: map[string]*mailboxState{},
			session: h.store.NewSession(login), notifiers: map[*notifyState]struct{}{}}
		h.accounts[account] = a
		go a.start()
	} else {
		a.session.Offer(login)
	}
	a.refs++
	h.mu.Unlock()
	select {
	case <-a.ready:
	case <-ctx.Done():
		a.release()
		return nil, ctx.Err()
	}
	if a.err != nil {
		a.release()
		return nil, a.err
	}
	return a, nil
}

// release drops one reference; the last one stops the watch.
func (a *accountHub) release() {
	h := a.hub
	h.mu.Lock()
	a.refs--
	last := a.refs == 0
	if last {
		delete(h.accounts, a.id)
	}
	h.mu.Unlock()
	if last {
		<-a.ready
		if a.cancel != nil {
			a.cancel()
		}
	}
}

// start finds the current revision and starts the watch from it: every
// listing made afterwards is at or after that revision, so the stream
// covers whatever happens after any listing.
func (a *accountHub) start() {
	defer close(a.ready)
	ctx, cancel := context.WithTimeout(a.storageCtx(context.Background()), 30*time.Second)
	defer cancel()
	st := a.hub.store
	inbox, err := st.Mailboxes.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: a.id, Name: "INBOX"})
	if err != nil {
		a.err = err
		return
	}
	head, err := st.Messages.ListMessages(ctx, &storagev1.ListMessagesRequest{AccountId: a.id, MailboxId: inbox.Mailbox.Id, Limit: 1})
	if err != nil {
		a.err = err
		return
	}
	runCtx, runCancel := context.WithCancel(a.storageCtx(context.Background()))
	a.cancel = runCancel
	go a.session.KeepFresh(runCtx, a.hub.log.With("account", a.id))
	go a.run(runCtx, head.Revision)
}

// storageCtx returns ctx whose storage calls act for the account's user.
func (a *accountHub) storageCtx(ctx context.Context) context.Context {
	return storeclient.WithSession(ctx, a.session)
}

// run follows the account's changes until ctx ends, reconnecting (from the
// last revision seen, so nothing is skipped) when the stream breaks.
func (a *accountHub) run(ctx context.Context, rev int64) {
	defer func() {
		if r := recover(); r != nil {
			a.hub.log.Error("account watch panicked", "account", a.id, "panic", r)
		}
	}()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		var pending []*storagev1.Change // pages of one revision so far
		stream, err := a.hub.store.Watch.Watch(ctx, &storagev1.WatchRequest{AccountId: a.id, AfterRevision: rev})
		if err == nil {
			for {
				resp, rerr := stream.Recv()
				if rerr != nil {
					err = rerr
					break
				}
				backoff = 100 * time.Millisecond
				switch {
				case resp.ResyncRequired:
					a.resyncAll(ctx)
				case resp.Partial:
					// A large change comes in pages: sessions see it
					// whole, once its last page is here.
					pending = append(pending, resp.Changes...)
				default:
					a.dispatch(resp.Revision, append(pending, resp.Changes...))
					pending = nil
				}
				if !resp.Partial {
					// Resume only after a revision's last response.
					rev = resp.Revision
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, io.EOF) {
			a.hub.log.Warn("account watch interrupted; resuming", "account", a.id, "revision", rev, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// dispatch hands each loaded mailbox the changes of one revision that
// concern it, then tells the NOTIFY sessions.
func (a *accountHub) dispatch(rev int64, changes []*storagev1.Change) {
	defer a.notifyChanges(changes)
	byMailbox := map[string][]*storagev1.Change{}
	var order []string
	for _, c := range changes {
		if _, seen := byMailbox[c.MailboxId]; !seen {
			order = append(order, c.MailboxId)
		}
		byMailbox[c.MailboxId] = append(byMailbox[c.MailboxId], c)
	}
	for _, id := range order {
		a.mu.Lock()
		m := a.mailboxes[id]
		a.mu.Unlock()
		if m != nil {
			m.apply(rev, byMailbox[id])
		}
	}
}

// resyncAll reloads every loaded mailbox after the watch lost history.
func (a *accountHub) resyncAll(ctx context.Context) {
	a.mu.Lock()
	var all []*mailboxState
	for _, m := range a.mailboxes {
		all = append(all, m)
	}
	a.mu.Unlock()
	for _, m := range all {
		if err := m.resync(ctx); err != nil {
			a.hub.log.Warn("mailbox resync failed", "account", a.id, "mailbox", m.id, "err", err)
		}
	}
	// NOTIFY's directory too: renames and subscription changes in the lost
	// history go untold, later ones are told right, and every mailbox's
	// STATUS is told again.
	a.notifyMu.Lock()
	reload := a.dir != nil && a.dirLoading == nil
	if reload {
		a.dirLoading = make(chan struct{})
	}
	ch := a.dirLoading
	a.notifyMu.Unlock()
	if reload {
		mailboxes, err := a.loadDir(ctx)
		close(ch)
		if err != nil {
			a.hub.log.Warn("NOTIFY mailbox directory reload failed", "account", a.id, "err", err)
		}
		a.notifyResync(mailboxes)
	}
}

// mailbox returns the shared state of a mailbox, loading it on first use.
// Release it with mailboxState.release.
func (a *accountHub) mailbox(ctx context.Context, id string) (*mailboxState, error) {
	a.mu.Lock()
	m, ok := a.mailboxes[id]
	if !ok {
		m = newMailboxState(a, id)
		a.mailboxes[id] = m
		go m.load()
	}
	m.refs++
	a.mu.Unlock()
	select {
	case <-m.ready:
	case <-ctx.Done():
		m.release()
		return nil, ctx.Err()
	}
	if m.loadErr != nil {
		m.release()
		return nil, m.loadErr
	}
	return m, nil
}
