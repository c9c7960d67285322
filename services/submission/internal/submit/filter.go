package submit

import (
	"crypto/tls"
	"io"
	"net"
	"slices"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/mailfleet/mailfleet/pkg/milter"
)

// The content filter (--milter) on submission, as Postfix runs
// smtpd_milters on its submission service: rspamd sees the user's login
// ({auth_authen}) and treats the mail as outbound. The whole transaction
// goes to the filter at the end of DATA (the message must be complete
// before a verdict anyway): a refusal at any step refuses the message.
// There is no Junk folder for mail going out, so a quarantine refuses it
// too; a discard is accepted and dropped, as the filter asked. The sender
// checks ran on the message as the user sent it: the filter is trusted
// configuration, and what it changes is signed as it left it.

// errDiscarded: the filter discarded the message; DATA answers 250.
var errDiscarded = reply(250, smtp.EnhancedCode{2, 0, 0}, "Discarded by the content filter")

// filterMessage runs the message that message() reads (size bytes) past the
// filter and returns how to read it as it goes on, with the filter's
// changes. Recipients the filter removes are taken off the transaction.
func (s *session) filterMessage(id string, message func() io.Reader, size int64) (func() (io.Reader, int64, error), error) {
	unchanged := func() (io.Reader, int64, error) { return message(), size, nil }
	if s.srv.cfg.Filter == nil {
		return unchanged, nil
	}
	c := milter.Client{IP: s.ip, Helo: s.conn.Hostname(), AuthUser: s.account.Address}
	if a, ok := s.conn.Conn().RemoteAddr().(*net.TCPAddr); ok {
		c.Port = a.Port
	}
	if st, ok := s.conn.TLSConnectionState(); ok {
		c.TLSVersion = tls.VersionName(st.Version)
	}
	t, r := s.srv.cfg.Filter.Start(c, s.from, s.log)
	defer t.Close()
	if r != nil {
		return nil, s.reject("content-filter", filterReply(r))
	}
	for _, to := range slices.Concat(s.local, s.remote) {
		if r := t.Rcpt(to); r != nil {
			return nil, s.reject("content-filter", filterReply(r))
		}
	}
	v := t.Data(id, message())
	switch v.Action {
	case milter.Reject, milter.TempFail:
		return nil, s.reject("content-filter", filterReply(v.Reply))
	case milter.Discard:
		s.log.Info("discarded by the content filter", "id", id)
		return nil, errDiscarded
	case milter.Quarantine:
		s.log.Info("refused: the content filter quarantined it", "id", id, "reason", v.Reason)
		return nil, s.reject("content-filter", reply(550, smtp.EnhancedCode{5, 7, 1}, "Message refused by the content filter"))
	}
	for _, r := range v.Removed {
		drop := func(to string) bool { return strings.EqualFold(to, r) }
		s.local, s.remote = slices.DeleteFunc(s.local, drop), slices.DeleteFunc(s.remote, drop)
	}
	if len(s.local)+len(s.remote) == 0 {
		s.log.Info("the content filter removed every recipient", "id", id)
		return nil, errDiscarded
	}
	return func() (io.Reader, int64, error) { return v.Rewrite(message(), size) }, nil
}

func filterReply(r *milter.Reply) *smtp.SMTPError {
	return reply(r.Code, smtp.EnhancedCode(r.Enhanced), r.Text)
}
