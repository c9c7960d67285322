package submit

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailfleet/mailfleet/pkg/spool"
	"github.com/mailfleet/mailfleet/pkg/storeclient"
	"github.com/mailfleet/mailfleet/pkg/timeoutconn"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

var sprintf = fmt.Sprintf
var sprint = fmt.Sprint

type session struct {
	srv  *Server
	conn *smtp.Conn
	ip   net.IP
	log  *slog.Logger

	account *storagev1.Account
	storage *storeclient.Session // the user's session with the storage tier
	from    string
	local   []string
	remote  []string
}

var _ smtp.AuthSession = (*session)(nil)

func reply(code int, enhanced smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enhanced, Message: msg}
}

func (s *session) reject(reason string, err *smtp.SMTPError) error {
	if s.srv.cfg.Observer != nil {
		s.srv.cfg.Observer.Rejected(reason)
	}
	s.log.Info("rejected", "reason", reason, "code", err.Code)
	return err
}

func (s *session) Reset()        { s.from, s.local, s.remote = "", nil, nil }
func (s *session) Logout() error { return nil }

// RFC 4954 AUTH with PLAIN (RFC 4616) and LOGIN.
func (s *session) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	if timeoutconn.TimedOut(s.conn.Conn()) {
		return nil, errTimedOut
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && !strings.EqualFold(identity, username) {
				return reply(535, smtp.EnhancedCode{5, 7, 8}, "Cannot act as another user")
			}
			return s.login(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{auth: s.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) login(username, password string) error {
	lim := s.srv.cfg.Limiter
	if lim.Locked(s.ip.String(), username) {
		return s.reject("auth-locked", reply(454, smtp.EnhancedCode{4, 7, 0}, "Too many failed logins, try later"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.StorageTimeout)
	defer cancel()
	resp, err := s.srv.store.Accounts.Authenticate(ctx, &storagev1.AuthenticateRequest{Username: username, Password: password, ClientIp: s.ip.String()})
	if storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_LOGIN_LOCKED {
		return s.reject("auth-locked", reply(454, smtp.EnhancedCode{4, 7, 0}, "Too many failed logins, try later"))
	}
	if storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_AUTH_FAILED {
		time.Sleep(lim.Failed(s.ip.String(), username))
		s.log.Info("login failed", "user", username)
		return s.reject("auth-failed", smtp.ErrAuthFailed)
	}
	if err != nil {
		s.log.Warn("login error", "err", err)
		return reply(454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure")
	}
	lim.Succeeded(s.ip.String(), username)
	s.account, s.storage = resp.Account, s.srv.store.NewSession(resp)
	s.log = s.log.With("account", resp.Account.Id)
	s.log.Info("logged in")
	return nil
}

// errTimedOut answers a command whose line was cut off by its read
// deadline (RFC 5321 4.5.3.2): it is not run, and the connection ends.
var errTimedOut = reply(421, smtp.EnhancedCode{4, 4, 2}, "Timeout waiting for a complete command, closing connection")

// owns reports whether address belongs to the authenticated account.
func (s *session) owns(address string) bool {
	address = strings.ToLower(strings.TrimSpace(address))
	if address == strings.ToLower(s.account.Address) {
		return true
	}
	for _, a := range s.account.Aliases {
		if strings.EqualFold(a, address) {
			return true
		}
	}
	return false
}

// RFC 6409 4.1, 6.1: MAIL needs AUTH, and the sender must be the user's.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if timeoutconn.TimedOut(s.conn.Conn()) {
		return errTimedOut
	}
	if s.srv.closing.Load() {
		return reply(421, smtp.EnhancedCode{4, 3, 2}, "Server shutting down, try again later")
	}
	if s.account == nil {
		return s.reject("auth-required", reply(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required"))
	}
	s.Reset()
	if opts != nil && opts.Size > s.srv.cfg.MaxMessageSize {
		return s.reject("too-large", reply(552, smtp.EnhancedCode{5, 3, 4}, "Message too large"))
	}
	if from == "" || !s.owns(from) {
		return s.reject("sender-not-owned", reply(553, smtp.EnhancedCode{5, 7, 1}, "Sender address not owned by the authenticated user"))
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if timeoutconn.TimedOut(s.conn.Conn()) {
		return errTimedOut
	}
	if len(s.local)+len(s.remote) >= s.srv.cfg.MaxRecipients {
		return s.reject("too-many-recipients", reply(452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.StorageTimeout)
	defer cancel()
	resp, err := s.srv.store.Accounts.ResolveRecipient(ctx, &storagev1.ResolveRecipientRequest{Address: to})
	switch {
	case storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT:
		return s.reject("bad-address", reply(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax"))
	case err != nil:
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure, try again later")
	}
	switch resp.Result {
	case storagev1.ResolveRecipientResponse_RESULT_LOCAL:
		s.local = append(s.local, to)
	case storagev1.ResolveRecipientResponse_RESULT_NOT_LOCAL:
		s.remote = append(s.remote, to)
	case storagev1.ResolveRecipientResponse_RESULT_DISABLED:
		return s.reject("disabled", reply(550, smtp.EnhancedCode{5, 2, 1}, "Mailbox disabled"))
	default:
		return s.reject("unknown-user", reply(550, smtp.EnhancedCode{5, 1, 1}, "No such user here"))
	}
	return nil
}

func (s *session) Data(r io.Reader) error {
	if timeoutconn.TimedOut(s.conn.Conn()) {
		return errTimedOut
	}
	sp := spool.New(s.srv.cfg.SpoolDir)
	sp.NormalizeLineEndings = true
	sp.MaxHeaderBytes, sp.MaxHeaderFields = spool.DefaultMaxHeaderBytes, spool.DefaultMaxHeaderFields
	defer sp.Close()
	if _, err := sp.ReadFrom(r); err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			return smtp.ErrDataTooLarge
		}
		if errors.Is(err, spool.ErrHeaderTooLarge) {
			return s.reject("header-too-large", reply(552, smtp.EnhancedCode{5, 3, 4}, "Message header too large"))
		}
		if errors.Is(err, smtp.ErrTooLongLine) {
			return s.reject("long-line", reply(500, smtp.EnhancedCode{5, 5, 2}, "Line too long (RFC 5321 4.5.3.1.6)"))
		}
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "Error reading message, try again later")
	}
	// RFC 6409 8.1: the From: must be the user's too, and so must every
	// address that claims to have sent the message (Sender:, Resent-From:,
	// Resent-Sender:). Exactly one From: field (RFC 5322 3.6): with two, a
	// check of one and a DKIM signature or display of the other differ.
	senders, err := headerSenders(sp.Reader())
	switch {
	case errors.Is(err, errManyFrom):
		return s.reject("many-from", reply(550, smtp.EnhancedCode{5, 6, 0}, "Message must have exactly one From: field (RFC 5322 3.6)"))
	case errors.Is(err, errBadSenderField):
		return s.reject("bad-sender-field", reply(553, smtp.EnhancedCode{5, 7, 1}, "A Sender:, Resent-From: or Resent-Sender: field does not parse"))
	case err != nil || len(senders.from) == 0:
		return s.reject("bad-from", reply(553, smtp.EnhancedCode{5, 7, 1}, "Message needs a From: header with your address"))
	}
	froms := senders.from
	for _, f := range froms {
		if !s.owns(f) {
			return s.reject("from-not-owned", reply(553, smtp.EnhancedCode{5, 7, 1}, "From: address not owned by the authenticated user"))
		}
	}
	for _, f := range senders.others {
		if !s.owns(f.address) {
			return s.reject("sender-field-not-owned", reply(553, smtp.EnhancedCode{5, 7, 1}, f.field+": address not owned by the authenticated user"))
		}
	}
	// Signing and storing act for the user: the storage tier checks that
	// the key's domain and the envelope sender are the user's.
	ctx, cancel := context.WithTimeout(storeclient.WithSession(context.Background(), s.storage), s.srv.cfg.StorageTimeout)
	defer cancel()
	fromDomain := froms[0][strings.LastIndexByte(froms[0], '@')+1:]
	id := newID()
	received := s.receivedHeader(id)
	// The message as it goes on: our Received: field, then what the client
	// sent, as the content filter (if any) left it.
	message, err := s.filterMessage(id, func() io.Reader { return io.MultiReader(strings.NewReader(received), sp.Reader()) },
		int64(len(received))+sp.Size())
	if err != nil {
		return err // a refusal, or errDiscarded (250)
	}
	msg, _, err := message()
	if err != nil {
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "Error reading message, try again later")
	}
	signature, err := s.srv.dkim.sign(ctx, strings.ToLower(fromDomain), msg)
	if err != nil {
		s.log.Warn("DKIM signing failed", "domain", fromDomain, "err", err)
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure, try again later")
	}
	msg, size, err := message()
	if err != nil {
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "Error reading message, try again later")
	}
	resp, err := s.store(ctx, io.MultiReader(strings.NewReader(signature), msg), int64(len(signature))+size)
	if err != nil {
		s.log.Warn("storing the message failed", "id", id, "err", err)
		return s.reject("storage", reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary storage failure, try again later"))
	}
	delivered, queued := 0, len(s.remote)
	for _, r := range resp.Results {
		switch r.Status {
		case storagev1.RecipientResult_STATUS_DELIVERED:
			delivered++
		case storagev1.RecipientResult_STATUS_QUEUED:
			queued++
			s.log.Info("local mailbox full: queued for a later delivery", "id", id, "recipient", r.Recipient, "queue_id", resp.LocalQueueId)
		default:
			s.log.Error("local recipient not delivered", "id", id, "recipient", r.Recipient, "status", r.Status.String())
		}
	}
	if delivered == 0 && len(s.remote) == 0 {
		return s.reject("local-failed", reply(452, smtp.EnhancedCode{4, 2, 2}, "Recipient mailbox unavailable, try again later"))
	}
	if s.srv.cfg.Observer != nil {
		s.srv.cfg.Observer.Accepted(delivered, len(s.remote), int64(resp.Size))
	}
	s.log.Info("accepted", "id", id, "local", delivered, "remote", len(s.remote), "queue_id", resp.QueueId, "size", resp.Size)
	return accepted(id, delivered, queued)
}

// accepted is the 250 after DATA, saying what happened (go-smtp's default
// says "queued" whatever did): copies put in local mailboxes, and copies in
// the outbound queue (remote recipients, or a local mailbox without room).
func accepted(id string, delivered, queued int) *smtp.SMTPError {
	var parts []string
	if delivered > 0 {
		parts = append(parts, fmt.Sprintf("delivered to %d local %s", delivered, plural(delivered, "mailbox", "mailboxes")))
	}
	if queued > 0 {
		parts = append(parts, fmt.Sprintf("queued for %d %s", queued, plural(queued, "recipient", "recipients")))
	}
	msg := strings.Join(parts, ", ")
	return reply(250, smtp.EnhancedCode{2, 0, 0}, strings.ToUpper(msg[:1])+msg[1:]+" as "+id)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// store hands the message to the storage tier: local recipients delivered
// and remote ones queued in one step.
func (s *session) store(ctx context.Context, msg io.Reader, size int64) (*storagev1.DeliverResponse, error) {
	// A local recipient that cannot take the message at DATA time (RCPT
	// checked it: the mailbox filled or the account went since) is queued
	// for a later delivery or a DSN rather than lost behind our 250.
	meta := &storagev1.DeliverRequest_Metadata{Recipients: s.local, SizeHint: uint64(size), QueueFailedRecipients: true, MailFrom: s.from}
	if len(s.remote) > 0 {
		meta.Outbound = &storagev1.EnqueueRequest_Metadata{AccountId: s.account.Id, MailFrom: s.from, Recipients: s.remote}
		if s.srv.cfg.QueueLifetime > 0 {
			meta.Outbound.ExpiresAt = timestamppb.New(time.Now().Add(s.srv.cfg.QueueLifetime))
		}
	}
	return s.srv.store.Deliver(ctx, meta, msg)
}

// receivedHeader records the submission (RFC 3848 ESMTPSA: with TLS and AUTH).
func (s *session) receivedHeader(id string) string {
	proto := "ESMTPA"
	if _, ok := s.conn.TLSConnectionState(); ok {
		proto = "ESMTPSA"
	}
	return fmt.Sprintf("Received: from %s ([%s])\r\n\tby %s (Mailfleet) with %s id %s;\r\n\t%s\r\n",
		sanitize(s.conn.Hostname()), s.ip, s.srv.cfg.Hostname, proto, id, time.Now().Format(time.RFC1123Z))
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '(' || r == ')' {
			return -1
		}
		return r
	}, s)
}

func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var (
	// errManyFrom: a header with more than one From: field.
	errManyFrom = errors.New("more than one From: field")
	// errBadSenderField: a Sender:-like field that is no address list.
	errBadSenderField = errors.New("malformed sender field")
)

// senders is who a message's header says sent it.
type senders struct {
	from   []string // the addresses of the one From: field
	others []senderField
}

type senderField struct{ field, address string }

// senderFields are the fields besides From: that name who sent a message
// (RFC 5322 3.6.2, 3.6.6); each must name the user as well.
var senderFields = []string{"Sender", "Resent-From", "Resent-Sender"}

// headerSenders reads the addresses of the From: field and of every
// Sender:, Resent-From: and Resent-Sender: field. A field that does not
// parse is an error: it cannot be checked.
func headerSenders(r io.Reader) (senders, error) {
	var out senders
	h, err := textproto.ReadHeader(bufio.NewReader(r))
	if err != nil {
		return out, err
	}
	if len(h.Values("From")) > 1 {
		return out, errManyFrom
	}
	list, err := mail.ParseAddressList(h.Get("From"))
	if err != nil {
		return out, err
	}
	for _, a := range list {
		out.from = append(out.from, a.Address)
	}
	for _, name := range senderFields {
		for _, v := range h.Values(name) {
			list, err := mail.ParseAddressList(v)
			if err != nil {
				return out, fmt.Errorf("%w %s: %v", errBadSenderField, name, err)
			}
			for _, a := range list {
				out.others = append(out.others, senderField{name, a.Address})
			}
		}
	}
	return out, nil
}

// loginServer is the SASL LOGIN mechanism (draft-murchison-sasl-login):
// "Username:" then "Password:".
type loginServer struct {
	auth     func(user, pass string) error
	username string
	step     int
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step++
		if len(response) > 0 { // initial response carries the username
			l.username = string(response)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.username = string(response)
		l.step++
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.auth(l.username, string(response))
	}
}
