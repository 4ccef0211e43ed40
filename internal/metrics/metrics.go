// Package metrics is the node's Prometheus registry: every decision by
// operation, channel, decision and rule with its latency, the time of
// each kernel stage, audit commits (latency, batch size), the budget
// charged per agreement, plus live values the other packages keep
// (connections held and refused per listener, open wire sessions,
// admission refusals, recovered panics, the store breaker) registered as
// functions. Labels never carry principals or data; agreement ids (names
// the workspace declares) label only the budget counter.
package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the registry and the metrics recorded on the request path.
type Metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	stages   *prometheus.HistogramVec
	charged  *prometheus.CounterVec
	commits  prometheus.Histogram
	batches  prometheus.Histogram
}

// New returns a registry with the process and Go collectors.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_requests_total", Help: "Governed operations by operation, channel, decision (allow, deny) and refusing rule.",
		}, []string{"op", "channel", "decision", "rule"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "airlock_request_seconds", Help: "Time from the kernel taking an operation to its audited decision.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, []string{"op", "channel", "decision"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "airlock_stage_seconds", Help: "Time of one kernel stage (prepare, authorize, charge, run = engine, release, audit) by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 20),
		}, []string{"op", "stage"}),
		charged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_budget_charged_total", Help: "Budget charged per agreement: zCDP rho for DP budgets, rows for list-rule quotas (resource).",
		}, []string{"agreement", "resource"}),
		commits: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "airlock_audit_commit_seconds", Help: "Time of one audit group commit to the state store.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "airlock_audit_batch_entries", Help: "Entries per audit group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
	}
	m.registry.MustRegister(m.requests, m.latency, m.stages, m.charged, m.commits, m.batches,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Decision records one audited decision.
func (m *Metrics) Decision(op, channel, decision, rule string, took time.Duration) {
	m.requests.WithLabelValues(op, channel, decision, rule).Inc()
	m.latency.WithLabelValues(op, channel, decision).Observe(took.Seconds())
}

// Stage records the time of one kernel stage.
func (m *Metrics) Stage(op, stage string, took time.Duration) {
	m.stages.WithLabelValues(op, stage).Observe(took.Seconds())
}

// Charged adds a charge to an agreement's counter; a list rule's quota
// key (agreement#rows) counts rows.
func (m *Metrics) Charged(agreement string, amount float64) {
	resource := "rho"
	if a, ok := strings.CutSuffix(agreement, "#rows"); ok {
		agreement, resource = a, "rows"
	}
	m.charged.WithLabelValues(agreement, resource).Add(amount)
}

// Commit records one audit group commit.
func (m *Metrics) Commit(entries int, took time.Duration) {
	m.commits.Observe(took.Seconds())
	m.batches.Observe(float64(entries))
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
