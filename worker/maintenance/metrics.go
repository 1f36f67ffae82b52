package maintenance

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the sweeper's series.
type Metrics struct {
	sweeps        prometheus.Counter
	sweeperLost   prometheus.Counter
	sweeperQueued prometheus.Counter
	sweeperErrors prometheus.Counter
}

// NewMetrics registers the series in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sweeps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stripe_webhooks_sweeps_total", Help: "Completed sweeps (run by one replica per WEBHOOK_SWEEP_INTERVAL).",
		}),
		sweeperLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stripe_webhooks_sweeper_lost_total",
			Help: "Events the sweeper found with no job waiting, retrying or in progress, and queued again.",
		}),
		sweeperQueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stripe_webhooks_sweeper_enqueued_total",
			Help: "Jobs the sweeper added for lost events (one the ingest queued meanwhile is merged, not counted).",
		}),
		sweeperErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stripe_webhooks_sweeper_errors_total", Help: "Sweeps cut short by a Redis error.",
		}),
	}
	reg.MustRegister(m.sweeps, m.sweeperLost, m.sweeperQueued, m.sweeperErrors)
	return m
}
