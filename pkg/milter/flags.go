package milter

import (
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Flags are a tier's content filter settings: --milter, --milter-timeout
// and --milter-default-action (Postfix's smtpd_milters, milter_*_timeout and
// milter_default_action).
type Flags struct {
	Address string
	Timeout time.Duration
	// DefaultAction is what happens to mail when the filter is down or
	// slow: accept or tempfail.
	DefaultAction string
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Address, "milter", "", "content filter (rspamd's proxy worker in milter mode, or any milter): host:port, inet:host:port or unix:/path (empty: no filtering)")
	fs.DurationVar(&f.Timeout, "milter-timeout", 30*time.Second, "bound on connecting to the filter and on each of its answers")
	fs.StringVar(&f.DefaultAction, "milter-default-action", "tempfail", "when the filter is down, slow or broken: tempfail (451 4.7.1, the sender retries) or accept (unfiltered, logged and counted)")
}

// New builds the filter the flags describe for tier ("inbound",
// "submission"): nil without --milter. Its actions are counted in
// mailfleet_<tier>_milter_actions_total.
func (f *Flags) New(tier, hostname string, reg prometheus.Registerer, log *slog.Logger) (*Filter, error) {
	if f.Address == "" {
		return nil, nil
	}
	if f.DefaultAction != "accept" && f.DefaultAction != "tempfail" {
		return nil, fmt.Errorf("--milter-default-action must be accept or tempfail, not %q", f.DefaultAction)
	}
	actions := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailfleet_" + tier + "_milter_actions_total",
		Help: "What the content filter made of messages and recipients: accept, reject, tempfail, discard, quarantine; fail-open and fail-closed when it was down, slow or broken."},
		[]string{"action"})
	reg.MustRegister(actions)
	log.Info("content filter", "milter", f.Address, "timeout", f.Timeout, "default_action", f.DefaultAction)
	return New(Config{Address: f.Address, Timeout: f.Timeout, FailOpen: f.DefaultAction == "accept",
		Hostname: hostname, DaemonName: "mailfleet-" + tier,
		Count: func(action string) { actions.WithLabelValues(action).Inc() }, Logger: log})
}
