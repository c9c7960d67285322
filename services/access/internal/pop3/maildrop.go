package pop3

import (
	"fmt"
	"strconv"
	"strings"
)

// stat counts the messages not marked deleted.
func (s *session) stat() (n int, size uint64) {
	for i, m := range s.msgs {
		if !s.deleted[i] {
			n++
			size += m.Size
		}
	}
	return n, size
}

// message parses a message number argument into an index of a message that
// is not deleted; on failure it has already replied.
func (s *session) message(arg string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(arg))
	if err != nil || n < 1 || n > len(s.msgs) {
		s.reply(false, "no such message")
		return 0, false
	}
	if s.deleted[n-1] {
		s.reply(false, "message already deleted")
		return 0, false
	}
	return n - 1, true
}

// RFC 1939 5: STAT.
func (s *session) cmdSTAT() error {
	n, size := s.stat()
	return s.reply(true, fmt.Sprintf("%d %d", n, size))
}

// listing implements LIST and UIDL: one message, or all not deleted.
func (s *session) listing(args string, value func(MessageInfo) string) error {
	if strings.TrimSpace(args) != "" {
		i, ok := s.message(args)
		if !ok {
			return nil
		}
		return s.reply(true, fmt.Sprintf("%d %s", i+1, value(s.msgs[i])))
	}
	var lines []string
	for i, m := range s.msgs {
		if !s.deleted[i] {
			lines = append(lines, fmt.Sprintf("%d %s", i+1, value(m)))
		}
	}
	n, size := s.stat()
	return s.replyLines(fmt.Sprintf("%d messages (%d octets)", n, size), lines)
}

// RFC 1939 5: LIST.
func (s *session) cmdLIST(args string) error {
	return s.listing(args, func(m MessageInfo) string { return strconv.FormatUint(m.Size, 10) })
}

// RFC 1939 7: UIDL.
func (s *session) cmdUIDL(args string) error {
	return s.listing(args, func(m MessageInfo) string { return m.UID })
}

// RFC 1939 5: RETR.
func (s *session) cmdRETR(args string) error {
	i, ok := s.message(args)
	if !ok {
		return nil
	}
	return s.send(i, -1)
}

// RFC 1939 7: TOP msg n — the header, the blank line and n body lines.
func (s *session) cmdTOP(args string) error {
	msgArg, linesArg, _ := strings.Cut(strings.TrimSpace(args), " ")
	lines, err := strconv.Atoi(strings.TrimSpace(linesArg))
	if err != nil || lines < 0 {
		return s.reply(false, "usage: TOP msg n")
	}
	i, ok := s.message(msgArg)
	if !ok {
		return nil
	}
	return s.send(i, lines)
}

// send streams message i (bodyLines < 0: all of it). A failure before the
// first byte is an -ERR; a failure in the middle ends the connection, since
// the client cannot tell a cut message from a whole one otherwise.
func (s *session) send(i, bodyLines int) error {
	ctx, cancel := s.ctx()
	defer cancel()
	rc, err := s.drop.Body(ctx, i)
	if err != nil {
		s.log.Warn("reading a message failed", "index", i, "err", err)
		return s.reply(false, "[SYS/TEMP] cannot read the message now")
	}
	defer rc.Close()
	s.lastOK = true
	if bodyLines < 0 {
		fmt.Fprintf(s.w, "+OK %d octets\r\n", s.msgs[i].Size)
	} else {
		s.w.WriteString("+OK top of message follows\r\n")
	}
	dw := newDotWriter(s.w, bodyLines)
	if err := dw.copyFrom(rc); err != nil {
		return fmt.Errorf("sending message %d: %w", i+1, err)
	}
	if err := dw.finish(); err != nil {
		return err
	}
	return s.w.Flush()
}

// RFC 1939 5: DELE marks; nothing is removed before QUIT.
func (s *session) cmdDELE(args string) error {
	i, ok := s.message(args)
	if !ok {
		return nil
	}
	s.deleted[i] = true
	return s.reply(true, fmt.Sprintf("message %d deleted", i+1))
}

// RFC 1939 5: RSET.
func (s *session) cmdRSET() error {
	for i := range s.deleted {
		s.deleted[i] = false
	}
	n, size := s.stat()
	return s.reply(true, fmt.Sprintf("maildrop has %d messages (%d octets)", n, size))
}

// RFC 1939 6: QUIT in the TRANSACTION state enters UPDATE: deletions happen now.
func (s *session) cmdQUIT() error {
	var gone []int
	for i, d := range s.deleted {
		if d {
			gone = append(gone, i)
		}
	}
	if len(gone) > 0 {
		ctx, cancel := s.ctx()
		defer cancel()
		if err := s.drop.Delete(ctx, gone); err != nil {
			s.log.Warn("UPDATE failed", "err", err)
			s.reply(false, "[SYS/TEMP] some deleted messages not removed")
			return errQuit
		}
		s.log.Info("messages deleted", "count", len(gone))
	}
	s.reply(true, "bye")
	return errQuit
}
