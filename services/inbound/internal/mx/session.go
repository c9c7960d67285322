package mx

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailfleet/mailfleet/pkg/milter"
	"github.com/mailfleet/mailfleet/pkg/spool"
	"github.com/mailfleet/mailfleet/pkg/timeoutconn"
	storagev1 "github.com/mailfleet/mailfleet/proto/mailfleet/storage/v1"
)

var sprintf = fmt.Sprintf
var sprint = fmt.Sprint

// session is one SMTP connection.
type session struct {
	srv  *Server
	conn *smtp.Conn
	ip   net.IP
	id   uint64
	log  *slog.Logger

	commands int
	// dnsblChecked is set once the client address was looked up in the
	// DNSBL zones; dnsblZone is the zone that lists it.
	dnsblChecked bool
	dnsblZone    string
	from         string
	size         int64
	recipients   []string
	filter       *milter.Transaction // the content filter's, nil without one
}

// reply builds an SMTP error; go-smtp recognises *smtp.SMTPError by type, so
// it is returned unwrapped.
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

func (s *session) count() error {
	s.commands++
	if s.commands > s.srv.cfg.MaxCommands {
		return s.reject("too-many-commands", reply(421, smtp.EnhancedCode{4, 7, 0}, "Too many commands, closing"))
	}
	if s.srv.closing.Load() {
		return reply(421, smtp.EnhancedCode{4, 3, 2}, "Server shutting down, try again later")
	}
	return nil
}

func (s *session) Reset() {
	s.from, s.size, s.recipients = "", 0, nil
	s.endFilter()
}

func (s *session) Logout() error { s.endFilter(); return nil }

// RFC 5321 4.1.1.2 MAIL.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if err := s.count(); err != nil {
		return err
	}
	if timeoutconn.TimedOut(s.conn.Conn()) {
		return errTimedOut
	}
	s.Reset()
	if !s.srv.msgRate.Allow(s.ip.String()) {
		return s.reject("message-rate", reply(452, smtp.EnhancedCode{4, 7, 0}, "Too much mail from your address in the last minute, try later"))
	}
	if opts != nil && opts.Size > s.srv.cfg.MaxMessageSize {
		return s.reject("too-large", reply(552, smtp.EnhancedCode{5, 3, 4}, fmt.Sprintf("Message too large (limit %d bytes)", s.srv.cfg.MaxMessageSize)))
	}
	s.from = from
	if opts != nil {
		s.size = opts.Size
	}
	return s.startFilter()
}

// RFC 5321 4.1.1.3 RCPT: only local recipients, checked now.
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if err := s.count(); err != nil {
		return err
	}
	if timeoutconn.TimedOut(s.conn.Conn()) {
		return errTimedOut
	}
	if len(s.recipients) >= s.srv.cfg.MaxRecipients {
		return s.reject("too-many-recipients", reply(452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients"))
	}
	if err := s.checkDNSBL(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.StorageTimeout)
	defer cancel()
	resp, err := s.srv.store.Accounts.ResolveRecipient(ctx, &storagev1.ResolveRecipientRequest{Address: to})
	switch {
	case storagev1.ReasonOf(err) == storagev1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT:
		return s.reject("bad-address", reply(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax"))
	case err != nil:
		s.log.Warn("resolving a recipient failed", "err", err)
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure, try again later")
	}
	switch resp.Result {
	case storagev1.ResolveRecipientResponse_RESULT_NOT_LOCAL:
		return s.reject("relay-denied", reply(550, smtp.EnhancedCode{5, 7, 1}, "Relay access denied"))
	case storagev1.ResolveRecipientResponse_RESULT_UNKNOWN_USER:
		return s.reject("unknown-user", reply(550, smtp.EnhancedCode{5, 1, 1}, "No such user here"))
	case storagev1.ResolveRecipientResponse_RESULT_DISABLED:
		return s.reject("disabled", reply(550, smtp.EnhancedCode{5, 2, 1}, "Mailbox disabled"))
	}
	if q := resp.Account.GetQuota(); q != nil {
		full := q.LimitBytes > 0 && q.UsedBytes >= q.LimitBytes || q.LimitMessages > 0 && q.UsedMessages >= q.LimitMessages
		if full {
			return s.reject("over-quota", reply(452, smtp.EnhancedCode{4, 2, 2}, "Mailbox full, try again later"))
		}
		if q.LimitBytes > 0 && uint64(s.size) > q.LimitBytes {
			return s.reject("over-quota", reply(552, smtp.EnhancedCode{5, 2, 2}, "Message larger than the mailbox quota"))
		}
	}
	if err := s.filterRcpt(to); err != nil {
		return err
	}
	s.recipients = append(s.recipients, to)
	return nil
}

// RFC 5321 4.1.1.4 DATA.
// errTimedOut answers a command whose line was cut off by its read
// deadline (RFC 5321 4.5.3.2): it is not run, and the connection ends.
var errTimedOut = reply(421, smtp.EnhancedCode{4, 4, 2}, "Timeout waiting for a complete command, closing connection")

func (s *session) Data(r io.Reader) error {
	if timeoutconn.TimedOut(s.conn.Conn()) {
		return errTimedOut
	}
	s.commands = 0 // the limit is on commands before DATA, per transaction
	sp := spool.New(s.srv.cfg.SpoolDir)
	sp.MaxHeaderBytes, sp.MaxHeaderFields = s.srv.cfg.MaxHeaderSize, spool.DefaultMaxHeaderFields
	defer sp.Close()
	if _, err := sp.ReadFrom(r); err != nil {
		if errors.Is(err, spool.ErrHeaderTooLarge) {
			return s.reject("header-too-large", reply(552, smtp.EnhancedCode{5, 3, 4},
				fmt.Sprintf("Message header too large (at most %d bytes and %d fields)", s.srv.cfg.MaxHeaderSize, spool.DefaultMaxHeaderFields)))
		}
		if errors.Is(err, spool.ErrBareLF) {
			return s.reject("bare-lf", reply(550, smtp.EnhancedCode{5, 5, 2}, "Bare LF in message data is not allowed (RFC 5321 2.3.8)"))
		}
		if errors.Is(err, smtp.ErrDataTooLarge) {
			s.reject("too-large", smtp.ErrDataTooLarge)
			return smtp.ErrDataTooLarge
		}
		if errors.Is(err, smtp.ErrTooLongLine) {
			return s.reject("long-line", reply(500, smtp.EnhancedCode{5, 5, 2}, "Line too long (RFC 5321 4.5.3.1.6)"))
		}
		s.log.Info("reading DATA failed", "err", err)
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "Error reading message, try again later")
	}
	authCtx, authCancel := context.WithTimeout(context.Background(), s.srv.cfg.AuthTimeout)
	auth := s.srv.checker.Check(authCtx, s.ip, s.conn.Hostname(), s.from, sp.Reader)
	authCancel()
	s.log.Info("authentication", "spf", auth.SPF, "dmarc", auth.DMARC, "from_domain", auth.FromDomain)
	if auth.TempError() {
		return s.reject("dns-temperror", reply(451, smtp.EnhancedCode{4, 4, 3}, "Temporary DNS failure checking the sender (SPF/DKIM/DMARC), try again later"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.StorageTimeout)
	defer cancel()
	if auth.Reject() && s.srv.cfg.DMARCReject {
		return s.reject("dmarc", reply(550, smtp.EnhancedCode{5, 7, 1}, "Message rejected by the sender domain's DMARC policy"))
	}
	id := newID()
	prefix := s.receivedHeader(id) + auth.Header + "\r\n"
	message := func() (io.Reader, error) {
		msg, err := stripForgedAuthResults(sp.Reader(), s.srv.cfg.Hostname)
		return io.MultiReader(strings.NewReader(prefix), msg), err
	}
	msg, size, junk, err := s.filterData(id, message, int64(len(prefix))+sp.Size())
	if err == errDiscarded {
		return nil
	}
	if err != nil {
		return err
	}
	resp, err := s.deliver(ctx, msg, size, junk)
	if err != nil {
		s.log.Warn("storing the message failed", "id", id, "err", err)
		return s.reject("storage", reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary storage failure, try again later"))
	}
	return s.outcome(id, resp)
}

// outcome turns per-recipient results into the one DATA reply.
func (s *session) outcome(id string, resp *storagev1.DeliverResponse) error {
	delivered, queued := 0, 0
	var firstFailure storagev1.RecipientResult_Status
	for _, r := range resp.Results {
		switch r.Status {
		case storagev1.RecipientResult_STATUS_DELIVERED:
			delivered++
		case storagev1.RecipientResult_STATUS_QUEUED:
			queued++
		default:
			if firstFailure == storagev1.RecipientResult_STATUS_UNSPECIFIED {
				firstFailure = r.Status
			}
		}
	}
	if delivered+queued == len(resp.Results) {
		if s.srv.cfg.Observer != nil {
			s.srv.cfg.Observer.Accepted(delivered, int64(resp.Size))
		}
		s.log.Info("accepted", "id", id, "recipients", delivered, "queued", queued, "local_queue_id", resp.LocalQueueId, "size", resp.Size)
		return accepted(id, delivered, queued)
	}
	if delivered > 0 {
		// Cannot happen while storage queues what it cannot deliver (see
		// deliver); the message is durable for the others, so it is accepted.
		s.log.Error("message accepted but not stored for every recipient", "id", id, "delivered", delivered, "queued", queued, "recipients", len(resp.Results))
		return accepted(id, delivered, queued)
	}
	switch firstFailure {
	case storagev1.RecipientResult_STATUS_OVER_QUOTA:
		return s.reject("over-quota", reply(452, smtp.EnhancedCode{4, 2, 2}, "Mailbox full, try again later"))
	case storagev1.RecipientResult_STATUS_TEMPORARY_FAILURE:
		return s.reject("storage", reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary storage failure, try again later"))
	case storagev1.RecipientResult_STATUS_DISABLED: // since RCPT
		return s.reject("disabled", reply(550, smtp.EnhancedCode{5, 2, 1}, "Mailbox disabled"))
	}
	return s.reject("unknown-user", reply(550, smtp.EnhancedCode{5, 1, 1}, "No such user here"))
}

// accepted is the 250 after DATA, saying what happened (go-smtp's default
// says "queued" whatever did): the message is in the mailboxes, or some
// copies wait in the queue for a mailbox with room.
func accepted(id string, delivered, queued int) *smtp.SMTPError {
	var msg string
	switch {
	case queued == 0:
		msg = fmt.Sprintf("Delivered to %d %s as %s", delivered, plural(delivered, "mailbox", "mailboxes"), id)
	case delivered == 0:
		msg = fmt.Sprintf("Queued for %d %s as %s", queued, plural(queued, "recipient", "recipients"), id)
	default:
		msg = fmt.Sprintf("Delivered to %d %s, queued for %d as %s", delivered, plural(delivered, "mailbox", "mailboxes"), queued, id)
	}
	return reply(250, smtp.EnhancedCode{2, 0, 0}, msg)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// checkDNSBL refuses every RCPT of a client listed in a DNSBL zone with 554
// 5.7.1 naming the zone (RFC 5782 2.1; at RCPT, as Postfix's
// smtpd_delay_reject, so that clients log the reason). A zone that cannot
// be asked is skipped, or answered 451 4.4.3 with DNSBLTempFail and asked
// again at the next RCPT. A verdict holds for the session.
func (s *session) checkDNSBL() error {
	if len(s.srv.cfg.DNSBLZones) == 0 {
		return nil
	}
	if !s.dnsblChecked {
		ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.AuthTimeout)
		zone, err := dnsblListing(ctx, s.srv.cfg.Resolver, s.srv.cfg.DNSBLZones, s.ip)
		cancel()
		if zone == "" && err != nil {
			s.log.Warn("DNSBL lookup failed", "err", err, "tempfail", s.srv.cfg.DNSBLTempFail)
			if s.srv.cfg.DNSBLTempFail {
				return s.reject("dnsbl-temperror", reply(451, smtp.EnhancedCode{4, 4, 3}, "Temporary DNS failure checking your address, try again later"))
			}
		}
		s.dnsblChecked, s.dnsblZone = true, zone
	}
	if s.dnsblZone != "" {
		return s.reject("dnsbl", reply(554, smtp.EnhancedCode{5, 7, 1},
			fmt.Sprintf("Service unavailable; client host [%s] blocked using %s", s.ip, s.dnsblZone)))
	}
	return nil
}

// deliver streams the message to the storage tier for every recipient.
func (s *session) deliver(ctx context.Context, msg io.Reader, size int64, junk bool) (*storagev1.DeliverResponse, error) {
	// Once anyone gets the message, a recipient that cannot take it now (a
	// mailbox that filled since RCPT, an account deleted since) is queued:
	// delivered when there is room, else the sender gets a DSN.
	return s.srv.store.Deliver(ctx, &storagev1.DeliverRequest_Metadata{Recipients: s.recipients, SizeHint: uint64(size),
		QueueFailedRecipients: true, MailFrom: s.from, Junk: junk}, msg)
}

// receivedHeader is the RFC 5321 4.4 trace field, with the RFC 3848
// protocol name.
func (s *session) receivedHeader(id string) string {
	proto := "ESMTP"
	if _, ok := s.conn.TLSConnectionState(); ok {
		proto = "ESMTPS"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (Mailfleet) with %s id %s", sanitize(s.conn.Hostname()), s.ip, s.srv.cfg.Hostname, proto, id)
	if len(s.recipients) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", sanitize(s.recipients[0]))
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", time.Now().Format(time.RFC1123Z))
	return b.String()
}

// sanitize keeps client-supplied text from breaking the header.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '(' || r == ')' || r == '<' || r == '>' {
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

// stripForgedAuthResults drops Authentication-Results fields that claim to
// come from this server (RFC 8601 5): only we may add those. The
// authserv-id is compared as a domain name: case-insensitively, without a
// trailing dot, past comments and whatever version follows it.
func stripForgedAuthResults(r io.Reader, authServID string) (io.Reader, error) {
	br := bufio.NewReader(r)
	var header bytes.Buffer
	ours := canonicalAuthServID(authServID)
	dropping := false
	for {
		line, err := br.ReadString('\n')
		if strings.TrimRight(line, "\r\n") == "" || err != nil {
			header.WriteString(line) // the header's end (CRLF or bare LF)
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if !dropping {
				header.WriteString(line)
			}
			continue
		}
		dropping = false
		name, value, _ := strings.Cut(line, ":")
		if strings.EqualFold(strings.TrimSpace(name), "Authentication-Results") && authServIDOf(value) == ours {
			dropping = true
			continue
		}
		header.WriteString(line)
	}
	return io.MultiReader(&header, br), nil
}

// authServIDOf returns the authserv-id that an Authentication-Results
// value starts with (RFC 8601 2.2: [CFWS] authserv-id [CFWS version] ";"),
// canonicalized.
func authServIDOf(value string) string {
	value, _, _ = strings.Cut(value, ";")
	var b strings.Builder
	depth := 0
	for _, c := range value { // comments out, as RFC 5322 CFWS
		switch {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(c)
		}
	}
	fields := strings.Fields(b.String())
	if len(fields) == 0 {
		return ""
	}
	return canonicalAuthServID(fields[0])
}

// canonicalAuthServID spells a domain-like authserv-id one way: lower case,
// no trailing dot.
func canonicalAuthServID(id string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(id)), ".")
}

var _ smtp.Session = (*session)(nil)
