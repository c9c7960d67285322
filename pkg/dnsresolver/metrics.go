package dnsresolver

import "github.com/prometheus/client_golang/prometheus"

// metrics of one resolver; a process registers them once (Collectors).
type metrics struct {
	requests *prometheus.CounterVec
	latency  prometheus.Histogram
	failures *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailfleet_dns_cache_requests_total",
			Help: "DNS lookups by cache result (hit rate = hit / all)."}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mailfleet_dns_lookup_duration_seconds",
			Help:    "Lookups the cache could not answer: time asking the servers, retries included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2}}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailfleet_dns_failures_total",
			Help: "Failed tries by reason (timeout, network, servfail, refused…)."}, []string{"reason"}),
	}
}

func (m *metrics) hit()                  { m.requests.WithLabelValues("hit").Inc() }
func (m *metrics) miss()                 { m.requests.WithLabelValues("miss").Inc() }
func (m *metrics) failure(reason string) { m.failures.WithLabelValues(reason).Inc() }

// Collectors returns the resolver's metrics, to register where the process
// exposes its own: mailfleet_dns_cache_requests_total{result},
// mailfleet_dns_lookup_duration_seconds, mailfleet_dns_failures_total{reason}
// and mailfleet_dns_cache_entries.
func (r *Resolver) Collectors() []prometheus.Collector {
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mailfleet_dns_cache_entries",
		Help: "Answers in the DNS cache."}, func() float64 { return float64(r.cache.len()) })
	return []prometheus.Collector{r.metrics.requests, r.metrics.latency, r.metrics.failures, entries}
}
