// Package milter runs the mail the MX receives (and, optionally, what the
// submission tier's users send) past an external content filter (rspamd, or
// any other milter) over Sendmail's milter protocol
// (version 6, as Postfix speaks it) with github.com/d--j/go-milter, and
// turns the filter's answers into SMTP replies and changes to the message.
//
// One milter connection serves one SMTP transaction: it is opened at MAIL,
// told the client (address, HELO) and the sender, then each accepted
// recipient, then the header and the body at the end of DATA, and closed
// when the transaction ends. That is a connect and a negotiation per message
// on a cluster-local network, but no filter connection is held for an idle
// SMTP client and no state outlives a transaction that went wrong.
//
// When the filter cannot be reached, times out or breaks the protocol, the
// transaction either goes on unfiltered (fail-open: logged and counted) or
// gets 451 4.7.1 (fail-closed), as Postfix's milter_default_action accept
// and tempfail.
package milter

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// Config tells where the filter is and what to do without it.
type Config struct {
	// Address is host:port, inet:host:port or unix:/path.
	Address string
	// Timeout bounds connecting and every exchange with the filter (0: 10s).
	Timeout time.Duration
	// FailOpen accepts mail unfiltered when the filter is down, slow or
	// broken; otherwise such mail gets 451 4.7.1 and is retried by the
	// sender.
	FailOpen bool
	// Hostname is this MTA's name (the "j" macro).
	Hostname string
	// DaemonName is the "{daemon_name}" macro: which tier asks
	// (default "mailfleet-inbound").
	DaemonName string
	// MaxBodySize bounds a body the filter sends to replace the message's
	// (0: 50 MiB).
	MaxBodySize int
	// Count is told each action taken (the metric's label), when not nil.
	Count  func(action string)
	Logger *slog.Logger
}

// The actions counted.
const (
	CountAccept     = "accept"
	CountReject     = "reject"
	CountTempFail   = "tempfail"
	CountDiscard    = "discard"
	CountQuarantine = "quarantine"
	CountFailOpen   = "fail-open"
	CountFailClosed = "fail-closed"
)

// Filter is one configured milter. A nil *Filter filters nothing.
type Filter struct {
	cfg    Config
	client *gomilter.Client
}

// New checks cfg and prepares the client; nothing is dialled yet.
func New(cfg Config) (*Filter, error) {
	network, address, err := parseAddress(cfg.Address)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxBodySize <= 0 {
		cfg.MaxBodySize = 50 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	client := gomilter.NewClient(network, address,
		gomilter.WithDialer(&net.Dialer{Timeout: cfg.Timeout}),
		gomilter.WithReadTimeout(cfg.Timeout),
		gomilter.WithWriteTimeout(cfg.Timeout),
		// What the MX carries out, which is what rspamd asks for: the
		// library refuses a filter that asks for more than is offered.
		// Added recipients are not delivered (see Data), and the envelope
		// sender is not changed (SMFIF_CHGFROM is not offered).
		gomilter.WithActions(gomilter.OptAddHeader|gomilter.OptChangeHeader|gomilter.OptQuarantine|
			gomilter.OptChangeBody|gomilter.OptAddRcpt|gomilter.OptRemoveRcpt),
		// Header values are sent without the space after the colon
		// (SMFIP_HDR_LEADSPC not offered), and only accepted recipients
		// are sent (SMFIP_RCPT_REJ not offered): the MX refuses the others
		// before the filter sees them.
		gomilter.WithoutProtocol(gomilter.OptHeaderLeadingSpace|gomilter.OptRcptRej),
	)
	return &Filter{cfg: cfg, client: client}, nil
}

// parseAddress accepts Postfix's milter address forms and a bare host:port.
func parseAddress(a string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(a, "unix:"):
		network, address = "unix", strings.TrimPrefix(a, "unix:")
	case strings.HasPrefix(a, "inet:"):
		network, address = "tcp", strings.TrimPrefix(a, "inet:")
	default:
		network, address = "tcp", a
	}
	if network == "tcp" {
		if _, _, err := net.SplitHostPort(address); err != nil {
			return "", "", fmt.Errorf("milter address %q: want host:port, inet:host:port or unix:/path", a)
		}
	}
	if address == "" {
		return "", "", fmt.Errorf("milter address %q is empty", a)
	}
	return network, address, nil
}

// Client is what the MX knows of the SMTP client when a transaction starts.
type Client struct {
	IP   net.IP
	Port int
	// Helo is the name given in HELO/EHLO.
	Helo string
	// TLSVersion is "TLSv1.3" and the like under STARTTLS, else "".
	TLSVersion string
	// AuthUser is the SMTP AUTH login (submission), "" for none: filters
	// such as rspamd treat authenticated mail as outbound.
	AuthUser string
}

// Reply is an SMTP reply the filter asks for.
type Reply struct {
	Code int
	// Enhanced is the RFC 3463 status code, all zero when the filter gave
	// none.
	Enhanced [3]int
	Text     string
}

// Transaction is one message's exchange with the filter. A nil
// *Transaction (no filter configured) accepts everything.
type Transaction struct {
	f      *Filter
	s      *gomilter.ClientSession // nil: the filter has no more say in this transaction
	macros *gomilter.MacroBag
	// failed is set when the filter broke down under fail-closed: every
	// later step gets 451.
	failed bool
	// discard is set when the filter said discard before DATA (for a
	// recipient: for the whole message, as libmilter's SMFIS_DISCARD).
	discard bool
	log     *slog.Logger
}

// Start opens a transaction: it connects to the filter and sends the
// connection (SMFIC_CONNECT), HELO and MAIL FROM. A non-nil Reply refuses
// the MAIL command.
func (f *Filter) Start(c Client, from string, log *slog.Logger) (*Transaction, *Reply) {
	if f == nil {
		return nil, nil
	}
	t := &Transaction{f: f, macros: gomilter.NewMacroBag(), log: log}
	t.macros.Set(gomilter.MacroMTAFQDN, f.cfg.Hostname)
	daemon := f.cfg.DaemonName
	if daemon == "" {
		daemon = "mailfleet-inbound"
	}
	t.macros.Set(gomilter.MacroDaemonName, daemon)
	if c.AuthUser != "" {
		t.macros.Set(gomilter.MacroAuthAuthen, c.AuthUser)
	}
	t.macros.Set(gomilter.MacroMailAddr, from)
	if c.TLSVersion != "" {
		t.macros.Set(gomilter.MacroTlsVersion, c.TLSVersion)
	}
	s, err := f.client.Session(t.macros)
	if err != nil {
		return t, t.broken("connect", err)
	}
	t.s = s
	family := gomilter.FamilyInet
	if c.IP.To4() == nil {
		family = gomilter.FamilyInet6
	}
	// No reverse lookup is made: the host name is the address in brackets,
	// as Sendmail sends for a client without one.
	steps := []struct {
		stage string
		send  func() (*gomilter.Action, error)
	}{
		{"connect", func() (*gomilter.Action, error) {
			return s.Conn("["+c.IP.String()+"]", family, uint16(c.Port), c.IP.String())
		}},
		{"helo", func() (*gomilter.Action, error) { return s.Helo(c.Helo) }},
		{"mail", func() (*gomilter.Action, error) { return s.Mail(from, "") }},
	}
	for _, st := range steps {
		act, err := st.send()
		// Stop at a refusal, and when the filter left (accepted early,
		// discards, or failed open).
		if reply := t.step(st.stage, act, err); reply != nil || t.s == nil {
			return t, reply
		}
	}
	return t, nil
}

// Rcpt sends one accepted recipient (SMFIC_RCPT). A non-nil Reply refuses
// this recipient only; the transaction goes on with the others.
func (t *Transaction) Rcpt(to string) *Reply {
	if t == nil {
		return nil
	}
	if t.failed {
		return tempFail
	}
	if t.s == nil {
		return nil
	}
	t.macros.Set(gomilter.MacroRcptAddr, to)
	act, err := t.s.Rcpt(to, "")
	return t.step("rcpt", act, err)
}

// Action is what becomes of a message.
type Action int

const (
	Accept Action = iota
	// Reject and TempFail refuse the message with Verdict.Reply.
	Reject
	TempFail
	// Discard answers 250 and stores nothing.
	Discard
	// Quarantine stores the message in the recipients' Junk mailbox.
	Quarantine
)

// Verdict is the filter's answer to a whole message.
type Verdict struct {
	Action Action
	Reply  *Reply // Reject, TempFail
	// Reason is the filter's quarantine reason.
	Reason string
	// Removed are the recipients the filter took off the message
	// (smfi_delrcpt), without angle brackets.
	Removed []string
	// changes are the header changes, for Rewrite.
	changes []gomilter.ModifyAction
	// body replaces the message body when replaced is set
	// (smfi_replacebody, in chunks).
	body     []byte
	replaced bool
}

// Data sends the message (SMFIC_DATA, each header field, SMFIC_EOH, the
// body in chunks, SMFIC_BODYEOB) and returns the filter's verdict. msg is
// the message as it would be stored, our trace fields included, so that
// the filter's header indexes refer to what Rewrite changes.
func (t *Transaction) Data(queueID string, msg io.Reader) Verdict {
	if t == nil {
		return Verdict{}
	}
	if t.failed {
		return Verdict{Action: TempFail, Reply: tempFail}
	}
	if t.discard {
		t.count(CountDiscard)
		return Verdict{Action: Discard}
	}
	if t.s == nil {
		return Verdict{}
	}
	t.macros.Set(gomilter.MacroQueueId, queueID)
	v, err := t.data(msg)
	if err != nil {
		if reply := t.broken("data", err); reply != nil {
			return Verdict{Action: TempFail, Reply: reply}
		}
		return Verdict{}
	}
	t.count(map[Action]string{Accept: CountAccept, Reject: CountReject, TempFail: CountTempFail,
		Discard: CountDiscard, Quarantine: CountQuarantine}[v.Action])
	t.log.Info("content filter", "action", v.Action.String(), "header_changes", len(v.changes),
		"body_replaced", v.replaced, "recipients_removed", len(v.Removed), "reason", v.Reason)
	return v
}

func (t *Transaction) data(msg io.Reader) (Verdict, error) {
	fields, body, err := readHeader(msg)
	if err != nil {
		return Verdict{}, err
	}
	// The filter may end the message at any step (accept without further
	// filtering, discard, reject): then nothing more is sent.
	act, err := t.s.DataStart()
	for i := 0; err == nil && act.Type == gomilter.ActionContinue && i < len(fields); i++ {
		act, err = t.s.HeaderField(fields[i].name, fields[i].value(), nil)
	}
	if err == nil && act.Type == gomilter.ActionContinue {
		act, err = t.s.HeaderEnd()
	}
	if err != nil {
		return Verdict{}, err
	}
	if act.Type != gomilter.ActionContinue {
		return verdictOf(act), nil
	}
	changes, act, err := t.s.BodyReadFrom(body)
	if err != nil {
		return Verdict{}, err
	}
	v := verdictOf(act)
	for _, c := range changes {
		switch c.Type {
		case gomilter.ActionQuarantine:
			if v.Action == Accept {
				v.Action, v.Reason = Quarantine, c.Reason
			}
		case gomilter.ActionAddHeader, gomilter.ActionChangeHeader, gomilter.ActionInsertHeader:
			v.changes = append(v.changes, c)
		case gomilter.ActionReplaceBody:
			if len(v.body)+len(c.Body) > t.f.cfg.MaxBodySize {
				return Verdict{}, fmt.Errorf("the filter's new body exceeds %d bytes", t.f.cfg.MaxBodySize)
			}
			v.body, v.replaced = append(v.body, c.Body...), true
		case gomilter.ActionDelRcpt:
			v.Removed = append(v.Removed, gomilter.RemoveAngle(c.Rcpt))
		default:
			// An added recipient (offered because rspamd will not talk
			// to an MTA that does not offer it): the MX delivers only
			// to recipients it accepted at RCPT, so it is not added.
			t.log.Warn("content filter change not carried out", "change", c.String())
		}
	}
	return v, nil
}

// verdictOf maps a final action (libmilter's SMFIS_*) to a verdict.
func verdictOf(act *gomilter.Action) Verdict {
	switch act.Type {
	case gomilter.ActionDiscard:
		return Verdict{Action: Discard}
	case gomilter.ActionReject, gomilter.ActionTempFail, gomilter.ActionRejectWithCode:
		r := parseReply(act.SMTPCode, act.SMTPReply)
		if r.Code/100 == 4 {
			return Verdict{Action: TempFail, Reply: r}
		}
		return Verdict{Action: Reject, Reply: r}
	}
	return Verdict{} // accept, continue
}

func (a Action) String() string {
	return [...]string{"accept", "reject", "tempfail", "discard", "quarantine"}[a]
}

// Close ends the transaction: the filter is told SMFIC_QUIT (libmilter
// then aborts a message not yet at its end) and the connection closes.
func (t *Transaction) Close() {
	if t == nil || t.s == nil {
		return
	}
	t.s.Close()
	t.s = nil
}

// step handles the filter's answer to a command before DATA (libmilter's
// xxfi_connect, xxfi_helo, xxfi_envfrom, xxfi_envrcpt): continue goes on;
// accept means "accept this message without further filtering"; reject and
// tempfail refuse the command; discard (allowed for envfrom and envrcpt)
// drops the whole message after DATA.
func (t *Transaction) step(stage string, act *gomilter.Action, err error) *Reply {
	if err != nil {
		return t.broken(stage, err)
	}
	switch act.Type {
	case gomilter.ActionAccept:
		t.count(CountAccept)
		t.log.Info("content filter accepted the message early", "stage", stage)
		t.Close()
	case gomilter.ActionDiscard:
		t.discard = true
		t.Close()
	case gomilter.ActionReject, gomilter.ActionTempFail, gomilter.ActionRejectWithCode:
		r := parseReply(act.SMTPCode, act.SMTPReply)
		if r.Code/100 == 4 {
			t.count(CountTempFail)
		} else {
			t.count(CountReject)
		}
		t.log.Info("content filter refused", "stage", stage, "code", r.Code)
		if stage != "rcpt" {
			// A refused connection, HELO or sender ends the transaction;
			// a refused recipient leaves it open for the others.
			t.Close()
		}
		return r
	}
	return nil
}

// tempFail is the reply while the filter cannot be asked (fail-closed), as
// Postfix's milter_default_action = tempfail answers.
var tempFail = &Reply{Code: 451, Enhanced: [3]int{4, 7, 1}, Text: "Content filter unavailable, try again later"}

// broken takes the filter out of the transaction after a failure: fail-open
// goes on without it, fail-closed answers 451 now and at every later step.
func (t *Transaction) broken(stage string, err error) *Reply {
	if t.s != nil {
		t.s.Close()
		t.s = nil
	}
	if t.f.cfg.FailOpen {
		t.count(CountFailOpen)
		t.log.Warn("content filter failed: accepting unfiltered (fail-open)", "stage", stage, "err", err)
		return nil
	}
	t.count(CountFailClosed)
	t.log.Warn("content filter failed: answering 451 (fail-closed)", "stage", stage, "err", err)
	t.failed = true
	return tempFail
}

func (t *Transaction) count(action string) {
	if t.f.cfg.Count != nil {
		t.f.cfg.Count(action)
	}
}

// parseReply splits a filter's reply ("554 5.7.1 Spam message rejected",
// possibly multi-line as "554-5.7.1 first\r\n554 5.7.1 last") into code,
// enhanced code and text. An enhanced code of another class than the reply
// code is dropped (RFC 3463 2: the classes must agree).
func parseReply(code uint16, raw string) *Reply {
	r := &Reply{Code: int(code)}
	var lines []string
	for i, line := range strings.Split(strings.ReplaceAll(raw, "\r\n", "\n"), "\n") {
		if len(line) >= 3 && line[:3] == strconv.Itoa(r.Code) {
			line = line[3:]
		}
		line = strings.TrimLeft(line, "- ")
		if enh, rest, ok := cutEnhanced(line); ok {
			if i == 0 && enh[0] == r.Code/100 {
				r.Enhanced = enh
			}
			line = rest
		}
		lines = append(lines, sanitize(line))
	}
	r.Text = strings.Join(lines, "\n")
	if strings.TrimSpace(r.Text) == "" {
		r.Text = "Refused by the content filter"
	}
	return r
}

// cutEnhanced takes an RFC 3463 status code ("5.7.1 ") off a reply line.
func cutEnhanced(line string) ([3]int, string, bool) {
	var enh [3]int
	code, rest, _ := strings.Cut(line, " ")
	parts := strings.Split(code, ".")
	if len(parts) != 3 {
		return enh, line, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 {
			return enh, line, false
		}
		enh[i] = n
	}
	if enh[0] != 2 && enh[0] != 4 && enh[0] != 5 {
		return enh, line, false
	}
	return enh, rest, true
}

// sanitize keeps control characters out of a reply line.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
