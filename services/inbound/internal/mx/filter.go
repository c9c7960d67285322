package mx

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/mailfleet/mailfleet/pkg/milter"
)

// The content filter's part of a session (see package milter): one filter
// transaction per SMTP transaction, started at MAIL and ended by Reset.

// startFilter opens the filter transaction once MAIL is accepted; the
// filter may still refuse the sender.
func (s *session) startFilter() error {
	c := milter.Client{IP: s.ip, Helo: s.conn.Hostname()}
	if a, ok := s.conn.Conn().RemoteAddr().(*net.TCPAddr); ok {
		c.Port = a.Port
	}
	if st, ok := s.conn.TLSConnectionState(); ok {
		c.TLSVersion = tls.VersionName(st.Version)
	}
	var reply *milter.Reply
	s.filter, reply = s.srv.cfg.Filter.Start(c, s.from, s.log)
	if reply != nil {
		s.endFilter()
		s.from = ""
		return s.reject("content-filter", filterReply(reply))
	}
	return nil
}

// filterRcpt asks the filter about one recipient, already found local.
func (s *session) filterRcpt(to string) error {
	if reply := s.filter.Rcpt(to); reply != nil {
		return s.reject("content-filter", filterReply(reply))
	}
	return nil
}

// endFilter ends the filter transaction (RSET, the end of DATA, QUIT).
func (s *session) endFilter() {
	s.filter.Close()
	s.filter = nil
}

// errDiscarded ends DATA with 250 and nothing stored: the filter said
// discard (libmilter's SMFIS_DISCARD, "accept this message, but silently
// discard it").
var errDiscarded = errors.New("discarded by the content filter")

// filterData runs the message past the filter and returns what to store:
// the message with the filter's header changes, its size, and whether it
// goes to the recipients' Junk mailbox (quarantine). message opens the
// message as it would be stored without a filter. The error is the DATA
// reply, or errDiscarded.
func (s *session) filterData(id string, message func() (io.Reader, error), size int64) (io.Reader, int64, bool, error) {
	readFailed := reply(451, smtp.EnhancedCode{4, 3, 0}, "Error reading message, try again later")
	msg, err := message()
	if err != nil {
		return nil, 0, false, readFailed
	}
	if s.filter == nil {
		return msg, size, false, nil
	}
	v := s.filter.Data(id, msg)
	switch v.Action {
	case milter.Reject, milter.TempFail:
		return nil, 0, false, s.reject("content-filter", filterReply(v.Reply))
	case milter.Discard:
		s.log.Info("discarded by the content filter", "id", id)
		return nil, 0, false, errDiscarded
	}
	if msg, err = message(); err == nil {
		msg, size, err = v.Rewrite(msg, size)
	}
	if err != nil {
		return nil, 0, false, readFailed
	}
	// Recipients the filter took off (smfi_delrcpt) get nothing; with none
	// left, nothing is stored, as Postfix does.
	for _, r := range v.Removed {
		s.recipients = slices.DeleteFunc(s.recipients, func(to string) bool { return strings.EqualFold(to, r) })
	}
	if len(s.recipients) == 0 {
		s.log.Info("the content filter removed every recipient", "id", id)
		return nil, 0, false, errDiscarded
	}
	return msg, size, v.Action == milter.Quarantine, nil
}

func filterReply(r *milter.Reply) *smtp.SMTPError {
	return reply(r.Code, smtp.EnhancedCode(r.Enhanced), r.Text)
}
