package imapd

import (
	"context"
	"errors"
	"github.com/mailfleet/mailfleet/services/access/internal/imapconn"
	"log/slog"
	"net"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

// session is one IMAP connection.
type session struct {
	srv  *Server
	conn *imapconn.Conn
	ip   string
	log  *slog.Logger

	// Authenticated state.
	account     *storagev1.Account
	acct        *accountHub
	appendLimit uint32

	// notify: RFC 5465 NOTIFY in force (notify.go), or nil.
	notify *notifyState

	// Selected state.
	selected *view
	// fetchExt: the extension items of the FETCH in progress (objectid.go).
	fetchExt imapconn.FetchExt
}

var (
	_ imapconn.Session = (*session)(nil)
)

// view is a session's window on a selected mailbox.
type view struct {
	state     *mailboxState
	tracker   *imapconn.SessionTracker
	name      string
	readOnly  bool
	searchRes imap.UIDSet
	recent    *recentView // IMAP4rev1 \Recent (recent.go)
	// contexts: the searches kept up to date (searchcontext.go), and the
	// messages this session changed the flags of since the last poll.
	contexts   []*searchContext
	ownChanged []uint32
	// newFetched: the highest UID that NOTIFY's MessageNew fetch-att list
	// has described, or that was there before (notify.go).
	newFetched uint32
}

// ctx bounds one command's storage calls.
func (s *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.base(), s.srv.cfg.CommandTimeout)
}

// base is the context of every storage call: once the user logged in, the
// calls carry the user's session with the storage tier.
func (s *session) base() context.Context {
	if s.acct == nil {
		return context.Background()
	}
	return s.acct.storageCtx(context.Background())
}

func (s *session) Close() error {
	s.unselect()
	s.logout()
	return nil
}

func (s *session) logout() {
	s.stopNotify()
	if s.acct != nil {
		s.srv.releaseAccountSession(s.account.Id)
		s.acct.release()
		s.acct, s.account = nil, nil
	}
}

func (s *session) Login(username, password string) error {
	cfg := s.srv.cfg
	if cfg.Limiter.Locked(s.ip, username) {
		cfg.Observer.Login("locked")
		s.log.Info("login refused: too many failures", "user", username)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Too many failed logins, try later"}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.srv.store.Accounts.Authenticate(ctx, &storagev1.AuthenticateRequest{Username: username, Password: password, ClientIp: s.ip})
	if storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_LOGIN_LOCKED {
		cfg.Observer.Login("locked")
		s.log.Info("login refused: too many failures in the cluster", "user", username)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Too many failed logins, try later"}
	}
	if storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_AUTH_FAILED {
		cfg.Observer.Login("failed")
		s.log.Info("login failed", "user", username)
		time.Sleep(cfg.Limiter.Failed(s.ip, username))
		return imapconn.ErrAuthFailed
	}
	if err != nil {
		cfg.Observer.Login("error")
		s.log.Warn("login error", "user", username, "err", err)
		return unavailable()
	}
	cfg.Limiter.Succeeded(s.ip, username)
	if !s.srv.acquireAccountSession(resp.Account.Id) {
		cfg.Observer.Login("limit")
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit, Text: "Too many sessions for this account"}
	}
	acct, err := s.srv.hub.acquire(ctx, resp)
	if err != nil {
		s.srv.releaseAccountSession(resp.Account.Id)
		cfg.Observer.Login("error")
		s.log.Warn("starting the account watch failed", "account", resp.Account.Id, "err", err)
		return unavailable()
	}
	s.account, s.acct = resp.Account, acct
	s.log = s.log.With("account", resp.Account.Id)
	s.appendLimit = s.computeAppendLimit(resp.Account.Quota)
	if err := s.ensureDefaultMailboxes(acct.storageCtx(ctx)); err != nil {
		s.log.Warn("creating default mailboxes failed", "err", err)
	}
	cfg.Observer.Login("ok")
	s.log.Info("logged in")
	return nil
}

// computeAppendLimit is the largest APPEND the account could ever take: the
// server's message size limit, or the whole byte quota if smaller (RFC 7889).
// A mailbox that is merely full answers NO [OVERQUOTA] at the APPEND itself,
// and stops doing so as soon as the quota is raised.
func (s *session) computeAppendLimit(q *storagev1.Quota) uint32 {
	limit := uint64(s.srv.cfg.MaxMessageSize)
	if q.GetLimitBytes() > 0 {
		limit = min(limit, q.LimitBytes)
	}
	return uint32(min(limit, 1<<32-1))
}

func (s *session) AppendLimit() uint32 { return s.appendLimit }

// ensureDefaultMailboxes creates the special-use folders a client expects if
// an account lacks them (accounts get them at creation; this repairs).
func (s *session) ensureDefaultMailboxes(ctx context.Context) error {
	resp, err := s.srv.store.Mailboxes.ListMailboxes(ctx, &storagev1.ListMailboxesRequest{AccountId: s.account.Id})
	if err != nil {
		return err
	}
	have := map[storagev1.SpecialUse]bool{}
	for _, mb := range resp.Mailboxes {
		have[mb.SpecialUse] = true
	}
	for name, use := range map[string]storagev1.SpecialUse{
		"Drafts": storagev1.SpecialUse_SPECIAL_USE_DRAFTS, "Sent": storagev1.SpecialUse_SPECIAL_USE_SENT,
		"Trash": storagev1.SpecialUse_SPECIAL_USE_TRASH, "Junk": storagev1.SpecialUse_SPECIAL_USE_JUNK,
		"Archive": storagev1.SpecialUse_SPECIAL_USE_ARCHIVE,
	} {
		if !have[use] {
			_, err := s.srv.store.Mailboxes.CreateMailbox(ctx, &storagev1.CreateMailboxRequest{AccountId: s.account.Id, Name: name, SpecialUse: use, Subscribed: true})
			if err != nil && storagev1.ReasonOf(err) != storagev1.ErrorReason_ERROR_REASON_MAILBOX_EXISTS {
				return err
			}
		}
	}
	return nil
}

// RFC 4616 PLAIN via AUTHENTICATE (with SASL-IR).
func (s *session) AuthenticateMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Authenticate(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Unsupported mechanism"}
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthorizationFailed, Text: "Cannot act as another user"}
		}
		return s.Login(username, password)
	}), nil
}

// RFC 8437 UNAUTHENTICATE.
func (s *session) Unauthenticate() error {
	s.unselect()
	s.logout()
	return nil
}

// RFC 2342 NAMESPACE: one personal namespace.
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

func (s *session) Poll(w *imapconn.UpdateWriter, allowExpunge bool) error {
	if s.selected == nil {
		return nil
	}
	if allowExpunge {
		s.catchUp()
	}
	claimed := s.claimArrivals()
	if err := s.pollTracker(w, allowExpunge); err != nil {
		return err
	}
	return s.reportArrivals(w, claimed)
}

// pollTracker writes the selected mailbox's pending updates, with the
// search contexts' updates among them when there are any.
func (s *session) pollTracker(w *imapconn.UpdateWriter, allowExpunge bool) error {
	v := s.selected
	w = s.selectedWriter(w)
	if len(v.contexts) == 0 {
		v.ownChanged = nil
		return v.tracker.Poll(w, allowExpunge)
	}
	cw := newContextSink(w, s, v)
	if err := cw.checkOwnChanges(); err != nil {
		return err
	}
	if err := v.tracker.Poll(cw, allowExpunge); err != nil {
		return err
	}
	return cw.flush()
}

// catchUp waits until this pod's view of the selected mailbox includes every
// change committed before now, through whichever pod, so that a NOOP (and
// any command that may report expunges) shows what other sessions did
// before it, as a single-server IMAP store would. Changes arrive through the
// storage Watch stream within milliseconds; this closes that gap at the
// cost of one storage read.
func (s *session) catchUp() {
	// Bounded tighter than a command: with storage in trouble a NOOP still
	// answers promptly from what the pod has.
	ctx, cancel := context.WithTimeout(s.base(), catchUpWait)
	defer cancel()
	resp, err := s.srv.store.Mailboxes.GetMailbox(ctx, &storagev1.GetMailboxRequest{AccountId: s.account.Id, MailboxId: s.selected.state.id})
	if err != nil {
		return // the mailbox went away or storage is down: report what we have
	}
	s.selected.state.waitModseq(resp.Mailbox.HighestModseq, catchUpWait)
}

// catchUpWait bounds each half of catchUp.
const catchUpWait = 2 * time.Second

func (s *session) Idle(w *imapconn.UpdateWriter, wake func()) (update, stop func() error, err error) {
	// Under NOTIFY, IDLE reports what NOTIFY asks for (RFC 5465 section
	// 4): the other mailboxes' notifications, and nothing of the selected
	// mailbox for (SELECTED NONE).
	var t *imapconn.SessionTracker
	if g := s.selectedGroup(); s.selected != nil && (g == nil || g.Events != 0) {
		t = s.selected.tracker
	}
	closed := func() bool { return s.selected != nil && s.selected.tracker.Closed() }
	update = func() error {
		if closed() {
			return imapconn.ErrSessionClosed
		}
		if t != nil {
			// RFC 3501 7.3.2: RECENT "is generated whenever the size of
			// the mailbox changes": arrivals are claimed as they are
			// announced (one claim per wake that brings some), and RECENT
			// follows their EXISTS.
			claimed := s.claimArrivals()
			if err := s.pollTracker(w, true); err != nil {
				return err
			}
			if err := s.reportArrivals(w, claimed); err != nil {
				return err
			}
			if err := s.fetchNew(w); err != nil {
				return err
			}
		}
		return s.writeNotifications(w)
	}
	ns := s.notify
	// woken: the selected mailbox's tracker wakes IDLE even under
	// (SELECTED NONE), whose updates are not written: its closing (the
	// mailbox deleted) still ends IDLE.
	var woken *imapconn.SessionTracker
	if s.selected != nil {
		woken = s.selected.tracker
	}
	stop = func() error {
		if woken != nil {
			woken.SetWake(nil)
		}
		if ns != nil {
			ns.setWake(nil)
		}
		if closed() {
			return imapconn.ErrSessionClosed
		}
		if t == nil {
			return nil
		}
		// What arrived while idling is this session's to claim now.
		return s.reportArrivals(w, s.claimArrivals())
	}
	if err := update(); err != nil {
		return nil, nil, err
	}
	if woken != nil {
		woken.SetWake(wake)
	}
	if ns != nil {
		ns.setWake(wake)
	}
	return update, stop, nil
}

// mapError turns a storage error into the IMAP reply for it (RFC 5530 codes).
func mapError(err error) error {
	if err == nil {
		return nil
	}
	var imapErr *imap.Error
	if errors.As(err, &imapErr) {
		return err
	}
	no := func(code imap.ResponseCode, text string) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	switch storagev1.ReasonOf(err) {
	case storagev1.ErrorReason_ERROR_REASON_OVER_QUOTA:
		return no(imap.ResponseCodeOverQuota, "Quota exceeded")
	case storagev1.ErrorReason_ERROR_REASON_MAILBOX_NOT_FOUND:
		return no(imap.ResponseCodeNonExistent, "No such mailbox")
	case storagev1.ErrorReason_ERROR_REASON_MAILBOX_EXISTS:
		return no(imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case storagev1.ErrorReason_ERROR_REASON_MAILBOX_HAS_CHILDREN:
		return no(imap.ResponseCodeHasChildren, "Mailbox has children; delete them first")
	case storagev1.ErrorReason_ERROR_REASON_MAILBOX_PROTECTED:
		return no(imap.ResponseCodeCannot, "Not allowed on this mailbox")
	case storagev1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT:
		return no(imap.ResponseCodeCannot, status.Convert(err).Message())
	case storagev1.ErrorReason_ERROR_REASON_MESSAGE_TOO_LARGE:
		return no(imap.ResponseCodeTooBig, "Message too large")
	case storagev1.ErrorReason_ERROR_REASON_TOO_MANY_ITEMS:
		return no(imap.ResponseCodeLimit, "Too many mailboxes or messages in one step")
	case storagev1.ErrorReason_ERROR_REASON_ACCOUNT_NOT_FOUND:
		return no(imap.ResponseCodeUnavailable, "Account unavailable")
	}
	if status.Code(err) == codes.InvalidArgument {
		return no(imap.ResponseCodeCannot, "Invalid request")
	}
	if status.Code(err) == codes.Unauthenticated {
		// The user's storage session ended (past its maximum age, or the
		// account was disabled): the connection ends, the client logs in
		// again.
		return &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Session expired, please log in again"}
	}
	return unavailable()
}

func unavailable() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Temporary failure, try again later"}
}

func remoteIP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}
