// Package metrics holds the access tier's Prometheus metrics.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Protocol is the metrics of one protocol (imap or pop3).
type Protocol struct {
	proto       string
	connections *prometheus.CounterVec
	logins      *prometheus.CounterVec
	commands    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
}

// Set registers the access metrics once and hands out per-protocol views.
type Set struct {
	connections *prometheus.CounterVec
	logins      *prometheus.CounterVec
	commands    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
}

// New registers the metrics on reg.
func New(reg prometheus.Registerer) *Set {
	s := &Set{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailfleet_access_connections_total", Help: "Accepted connections by protocol."}, []string{"proto"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailfleet_access_logins_total", Help: "Login attempts by protocol and result."}, []string{"proto", "result"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailfleet_access_commands_total", Help: "Commands by protocol, name and result."}, []string{"proto", "command", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mailfleet_access_command_duration_seconds", Help: "Command latency by protocol and name.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"proto", "command"}),
	}
	reg.MustRegister(s.connections, s.logins, s.commands, s.latency)
	return s
}

// For returns the view of one protocol.
func (s *Set) For(proto string) *Protocol {
	return &Protocol{proto: proto, connections: s.connections, logins: s.logins, commands: s.commands, latency: s.latency}
}

// knownCommands bounds label cardinality: anything else is counted as "other".
var knownCommands = map[string]bool{}

func init() {
	for _, c := range []string{
		// POP3
		"CAPA", "STLS", "USER", "PASS", "AUTH", "QUIT", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP",
		// IMAP (the session methods; CAPABILITY, NOOP, ENABLE… are the library's own)
		"LOGIN", "SELECT", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "STATUS", "APPEND",
		"UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "IDLE",
	} {
		knownCommands[c] = true
	}
}

func (p *Protocol) Connection()         { p.connections.WithLabelValues(p.proto).Inc() }
func (p *Protocol) Login(result string) { p.logins.WithLabelValues(p.proto, result).Inc() }
func (p *Protocol) Command(name string, ok bool, d time.Duration) {
	if !knownCommands[name] {
		name = "other"
	}
	result := "ok"
	if !ok {
		result = "error"
	}
	p.commands.WithLabelValues(p.proto, name, result).Inc()
	p.latency.WithLabelValues(p.proto, name).Observe(d.Seconds())
}
