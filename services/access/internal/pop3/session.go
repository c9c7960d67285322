package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

type state int

const (
	stateAuthorization state = iota
	stateTransaction
)

// session is one connection.
type session struct {
	srv  *Server
	id   uint64
	ip   string
	log  *slog.Logger
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	tls  bool

	state       state
	user        string // from USER, waiting for PASS
	account     string
	drop        Maildrop
	msgs        []MessageInfo
	deleted     []bool
	badCommands int
	quit        bool // QUIT was answered
	lastOK      bool // the last reply was +OK (for metrics)

	mu       sync.Mutex
	stopping bool
}

func newSession(srv *Server, conn net.Conn, ip string, implicitTLS bool) *session {
	id := srv.nextID.Add(1)
	s := &session{srv: srv, id: id, ip: ip, conn: conn,
		log: srv.cfg.Logger.With("proto", "pop3", "conn", id, "remote", ip)}
	if implicitTLS {
		s.conn = tls.Server(conn, srv.cfg.TLS)
		s.tls = true
	}
	s.r = bufio.NewReaderSize(s.conn, 4096)
	s.w = bufio.NewWriterSize(s.conn, 32<<10)
	return s
}

// errQuit ends the session after the reply was sent.
var errQuit = errors.New("quit")

func (s *session) serve() {
	defer s.conn.Close()
	defer s.closeMaildrop()
	if s.tls {
		s.conn.SetDeadline(time.Now().Add(30 * time.Second))
		if err := s.conn.(*tls.Conn).Handshake(); err != nil {
			s.log.Debug("TLS handshake failed", "err", err)
			return
		}
	}
	s.log.Debug("connected", "tls", s.tls)
	if err := s.reply(true, "Mailfleet POP3 server ready"); err != nil {
		return
	}
	for {
		s.conn.SetReadDeadline(time.Now().Add(s.srv.cfg.IdleTimeout))
		// shutdown sets stopping before it wakes the reader: checked after
		// our deadline, so that ours cannot undo its wake-up.
		if s.isStopping() {
			return
		}
		line, err := s.readLine()
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				if s.reply(false, "line too long") != nil {
					return
				}
				continue
			}
			if s.isStopping() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.reply(false, "autologout: idle for too long")
			}
			s.log.Debug("connection ended", "err", err)
			return
		}
		name, args, _ := strings.Cut(line, " ")
		name = strings.ToUpper(name)
		start := time.Now()
		err = s.dispatch(name, args)
		s.srv.cfg.Observer.Command(name, s.lastOK && (err == nil || err == errQuit), time.Since(start))
		if err == errQuit {
			s.quit = true
			s.w.Flush() // a pipelined QUIT's reply must still go out
		}
		if err == errQuit || s.isStopping() {
			return
		}
		if err != nil {
			s.log.Debug("command failed", "command", name, "err", err)
			return
		}
		if s.r.Buffered() == 0 {
			// PIPELINING: flush only once the client has nothing more queued.
			if err := s.w.Flush(); err != nil {
				return
			}
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine reads one CRLF- (or LF-) terminated line without the terminator.
// An over-long line is consumed and reported as errLineTooLong.
func (s *session) readLine() (string, error) {
	var buf []byte
	tooLong := false
	for {
		chunk, err := s.r.ReadSlice('\n')
		if !tooLong {
			buf = append(buf, chunk...)
			if len(buf) > s.srv.cfg.MaxLineLength {
				tooLong, buf = true, nil
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		if tooLong {
			return "", errLineTooLong
		}
		return strings.TrimRight(string(buf), "\r\n"), nil
	}
}

// reply writes "+OK text" or "-ERR text" and flushes unless pipelined
// commands are waiting.
func (s *session) reply(ok bool, text string) error {
	status := "-ERR"
	s.lastOK = ok
	if ok {
		status = "+OK"
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.srv.cfg.IdleTimeout))
	if _, err := fmt.Fprintf(s.w, "%s %s\r\n", status, text); err != nil {
		return err
	}
	if s.r.Buffered() > 0 {
		return nil
	}
	return s.w.Flush()
}

// replyLines writes a multi-line response (RFC 1939 3: dot-stuffed).
func (s *session) replyLines(first string, lines []string) error {
	s.lastOK = true
	s.conn.SetWriteDeadline(time.Now().Add(s.srv.cfg.IdleTimeout))
	fmt.Fprintf(s.w, "+OK %s\r\n", first)
	for _, l := range lines {
		if strings.HasPrefix(l, ".") {
			s.w.WriteByte('.')
		}
		s.w.WriteString(l)
		s.w.WriteString("\r\n")
	}
	if _, err := s.w.WriteString(".\r\n"); err != nil {
		return err
	}
	return s.w.Flush()
}

func (s *session) dispatch(name, args string) error {
	if s.state == stateAuthorization {
		switch name {
		case "CAPA":
			return s.cmdCAPA()
		case "STLS":
			return s.cmdSTLS()
		case "USER":
			return s.cmdUSER(args)
		case "PASS":
			return s.cmdPASS(args)
		case "AUTH":
			return s.cmdAUTH(args)
		case "QUIT":
			s.reply(true, "bye")
			return errQuit
		}
		// Unknown or out-of-state commands before login: a few, then out.
		s.badCommands++
		if s.badCommands >= s.srv.cfg.MaxBadCommands {
			s.reply(false, "too many bad commands, closing")
			return errQuit
		}
		return s.reply(false, "unknown command or not allowed before login")
	}
	switch name {
	case "CAPA":
		return s.cmdCAPA()
	case "STAT":
		return s.cmdSTAT()
	case "LIST":
		return s.cmdLIST(args)
	case "UIDL":
		return s.cmdUIDL(args)
	case "RETR":
		return s.cmdRETR(args)
	case "TOP":
		return s.cmdTOP(args)
	case "DELE":
		return s.cmdDELE(args)
	case "RSET":
		return s.cmdRSET()
	case "NOOP":
		return s.reply(true, "")
	case "QUIT":
		return s.cmdQUIT()
	}
	return s.reply(false, "unknown command")
}

// shutdown is called by Server.Shutdown: tell the client, delete nothing.
func (s *session) shutdown() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	// Interrupt a blocked read; the serve loop sees stopping and leaves.
	s.conn.SetReadDeadline(time.Now())
}

func (s *session) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

func (s *session) closeMaildrop() {
	if s.isStopping() && !s.quit {
		s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		s.w.WriteString("-ERR [SYS/TEMP] server shutting down, no messages deleted\r\n")
		s.w.Flush()
	}
	if s.drop != nil {
		if err := s.drop.Close(); err != nil {
			s.log.Warn("releasing the maildrop failed; its lock will expire", "account", s.account, "err", err)
		}
		s.drop = nil
	}
}

// ctx is the context of backend calls: bounded, so a stuck storage tier
// cannot hold a session forever.
func (s *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}
