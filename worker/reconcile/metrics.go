package reconcile

import (
	"github.com/prometheus/client_golang/prometheus"

	"stripe-webhooks/worker/handler"
)

// Metrics are the series of periodic reconciles and resyncs.
type Metrics struct {
	missing     *prometheus.CounterVec
	runs        *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	skipped     prometheus.Counter
	resynced    prometheus.Counter
}

// NewMetrics registers the series in reg, every one from 0: increase()
// never counts the first increment of a series that appears at 1, and the
// alerts are about exactly that one.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		missing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stripe_webhooks_reconcile_missing_events_total",
			Help: "Events reconcile found in Stripe's API but not stored (never delivered), and stored, by event type.",
		}, []string{"event_type"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stripe_webhooks_reconcile_runs_total",
			Help: "Periodic reconcile runs, by outcome (ok: every account it reached was listed or skipped; failed: an account or the whole run could not be listed).",
		}, []string{"outcome"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stripe_webhooks_reconcile_last_success_timestamp_seconds",
			Help: "Unix time of the last periodic reconcile that ended ok (0: none yet in this process).",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stripe_webhooks_reconcile_skipped_accounts_total",
			Help: "Connected accounts periodic reconcile skipped because the platform's access to them is revoked (deauthorized, or refused by Stripe).",
		}),
		resynced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stripe_webhooks_resynced_accounts_total",
			Help: "Connected accounts whose state resync fetched from Stripe's API and applied.",
		}),
	}
	for _, o := range []string{"ok", "failed"} {
		m.runs.WithLabelValues(o)
	}
	for _, t := range handler.Types() {
		m.missing.WithLabelValues(t)
	}
	reg.MustRegister(m.missing, m.runs, m.lastSuccess, m.skipped, m.resynced)
	return m
}
