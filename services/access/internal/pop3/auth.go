package pop3

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// authAllowed reports whether credentials may be sent on this connection.
func (s *session) authAllowed() bool { return s.tls || s.srv.cfg.AllowInsecureAuth }

// RFC 2449 5: CAPA.
func (s *session) cmdCAPA() error {
	caps := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	if s.state == stateAuthorization {
		if s.srv.cfg.TLS != nil && !s.tls {
			caps = append(caps, "STLS")
		}
		if s.authAllowed() {
			caps = append(caps, "USER", "SASL PLAIN")
		}
	}
	caps = append(caps, "EXPIRE NEVER", "IMPLEMENTATION Mailfleet")
	return s.replyLines("capability list follows", caps)
}

// RFC 2595 4: STLS.
func (s *session) cmdSTLS() error {
	if s.srv.cfg.TLS == nil {
		return s.reply(false, "TLS not available")
	}
	if s.tls {
		return s.reply(false, "already using TLS")
	}
	if s.r.Buffered() > 0 {
		// Plaintext pipelined after STLS could be injected into the TLS
		// session (CVE-2011-0411 style): refuse.
		s.reply(false, "commands pipelined after STLS")
		return errQuit
	}
	if err := s.reply(true, "begin TLS negotiation"); err != nil {
		return err
	}
	tlsConn := tls.Server(s.conn, s.srv.cfg.TLS)
	s.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tlsConn.Handshake(); err != nil {
		return fmt.Errorf("STLS handshake: %w", err)
	}
	s.conn.SetDeadline(time.Time{})
	s.conn, s.tls, s.user = tlsConn, true, ""
	s.r.Reset(s.conn)
	s.w.Reset(s.conn)
	return nil
}

func (s *session) cmdUSER(args string) error {
	if !s.authAllowed() {
		return s.reply(false, "[AUTH] TLS required: use STLS first")
	}
	if args == "" || len(args) > 320 {
		return s.reply(false, "usage: USER name")
	}
	s.user = args
	return s.reply(true, "send PASS")
}

func (s *session) cmdPASS(args string) error {
	if !s.authAllowed() {
		return s.reply(false, "[AUTH] TLS required: use STLS first")
	}
	if s.user == "" {
		return s.reply(false, "send USER first")
	}
	user := s.user
	s.user = ""
	return s.login(user, args)
}

// RFC 5034: AUTH PLAIN, with or without an initial response.
func (s *session) cmdAUTH(args string) error {
	if !s.authAllowed() {
		return s.reply(false, "[AUTH] TLS required: use STLS first")
	}
	mech, ir, hasIR := strings.Cut(args, " ")
	if !strings.EqualFold(mech, "PLAIN") {
		return s.reply(false, "unsupported mechanism (use PLAIN)")
	}
	if !hasIR {
		s.conn.SetWriteDeadline(time.Now().Add(s.srv.cfg.IdleTimeout))
		s.w.WriteString("+ \r\n")
		if err := s.w.Flush(); err != nil {
			return err
		}
		line, err := s.readLine()
		if errors.Is(err, errLineTooLong) {
			return s.reply(false, "[AUTH] response too long")
		}
		if err != nil {
			return err
		}
		ir = line
	}
	if ir == "*" {
		return s.reply(false, "authentication cancelled")
	}
	if ir == "=" {
		ir = ""
	}
	raw, err := base64.StdEncoding.DecodeString(ir)
	if err != nil {
		return s.reply(false, "[AUTH] malformed response")
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 {
		return s.reply(false, "[AUTH] malformed response")
	}
	authz, authc, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if authz != "" && !strings.EqualFold(authz, authc) {
		return s.reply(false, "[AUTH] authorization identity differs from authentication identity")
	}
	return s.login(authc, pass)
}

// login authenticates and opens the maildrop.
func (s *session) login(user, pass string) error {
	cfg := s.srv.cfg
	if cfg.Limiter.Locked(s.ip, user) {
		cfg.Observer.Login("locked")
		s.log.Info("login refused: too many failures", "user", user)
		return s.reply(false, "[AUTH] too many failed logins, try later")
	}
	ctx, cancel := s.ctx()
	defer cancel()
	login, err := s.srv.backend.Authenticate(ctx, user, pass, s.ip)
	if errors.Is(err, ErrLocked) {
		cfg.Observer.Login("locked")
		s.log.Info("login refused: too many failures in the cluster", "user", user)
		return s.reply(false, "[AUTH] too many failed logins, try later")
	}
	if errors.Is(err, ErrAuthFailed) {
		cfg.Observer.Login("failed")
		s.log.Info("login failed", "user", user)
		time.Sleep(cfg.Limiter.Failed(s.ip, user))
		return s.reply(false, "[AUTH] authentication failed")
	}
	if err != nil {
		cfg.Observer.Login("error")
		s.log.Warn("login error", "user", user, "err", err)
		return s.reply(false, "[SYS/TEMP] temporary failure, try later")
	}
	cfg.Limiter.Succeeded(s.ip, user)
	account := login.Account
	drop, err := s.srv.backend.Open(ctx, login)
	if errors.Is(err, ErrInUse) {
		cfg.Observer.Login("in-use")
		return s.reply(false, "[IN-USE] maildrop is locked by another session")
	}
	if err != nil {
		cfg.Observer.Login("error")
		s.log.Warn("opening the maildrop failed", "account", account, "err", err)
		return s.reply(false, "[SYS/TEMP] temporary failure, try later")
	}
	cfg.Observer.Login("ok")
	s.drop, s.account, s.state = drop, account, stateTransaction
	s.msgs = drop.Messages()
	s.deleted = make([]bool, len(s.msgs))
	s.log = s.log.With("account", account)
	s.log.Info("logged in", "messages", len(s.msgs))
	n, size := s.stat()
	return s.reply(true, fmt.Sprintf("maildrop has %d messages (%d octets)", n, size))
}
