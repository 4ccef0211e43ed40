// Package metrics is the node's Prometheus registry: every decision by
// channel, decision and rule with its latency, plus live values the other
// packages keep (connections held and refused per listener, admission
// refusals, recovered panics, the store breaker) registered as functions.
// Labels never carry principals, agreements or data.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the registry and the metrics recorded on the request path.
type Metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New returns a registry with the process and Go collectors.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_requests_total", Help: "Governed requests by channel, decision (allow, deny) and refusing rule.",
		}, []string{"channel", "decision", "rule"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "airlock_request_seconds", Help: "Time from the gateway taking a request to its audited decision.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"channel", "decision"}),
	}
	m.registry.MustRegister(m.requests, m.latency, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Decision records one audited decision.
func (m *Metrics) Decision(channel, decision, rule string, took time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(channel, decision, rule).Inc()
	m.latency.WithLabelValues(channel, decision).Observe(took.Seconds())
}

// Counter registers a counter read from f at each scrape.
func (m *Metrics) Counter(name, help string, labels prometheus.Labels, f func() float64) {
	m.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f))
}

// Gauge registers a gauge read from f at each scrape.
func (m *Metrics) Gauge(name, help string, labels prometheus.Labels, f func() float64) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f))
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
