package main

import (
	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"stripe-webhooks/pkg/health"
	"stripe-webhooks/pkg/store"
)

// metrics are the ingest's Prometheus series, in a registry of its own.
type metrics struct {
	registry        *prometheus.Registry
	deliveries      *prometheus.CounterVec
	byMode          *prometheus.CounterVec
	enqueueFailures prometheus.Counter
	// batchFailures counts batch inserts that failed and fell back to one
	// statement a delivery.
	batchFailures prometheus.Counter
	// secretFileUsable is 1 while STRIPE_WEBHOOK_SECRET_FILE reads well.
	secretFileUsable prometheus.Gauge
	// allowlistFileUsable is 1 while STRIPE_IP_ALLOWLIST_FILE reads well.
	allowlistFileUsable prometheus.Gauge
	storeSeconds        prometheus.Histogram
	enqueueSeconds      prometheus.Histogram
}

func newMetrics(st *store.Store, pool *redis.Pool) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &metrics{
		registry: reg,
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stripe_webhooks_deliveries_total",
			Help: "Webhook deliveries by outcome (stored, duplicate, rejected, store_failed) and rejection reason.",
		}, []string{"outcome", "reason"}),
		byMode: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stripe_webhooks_deliveries_by_mode_total",
			Help: "Verified deliveries stored (new or duplicate), by Stripe mode (live, test) and whether this deployment's STRIPE_LIVEMODE ignores them (stored, answered 200, never applied).",
		}, []string{"mode", "ignored"}),
		secretFileUsable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stripe_webhooks_secret_file_usable",
			Help: "1 while STRIPE_WEBHOOK_SECRET_FILE was read well at its last look, 0 while it is unreadable or empty (the previous secrets stay in use); 1 without a file.",
		}),
		allowlistFileUsable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stripe_webhooks_ip_allowlist_file_usable",
			Help: "1 while STRIPE_IP_ALLOWLIST_FILE was read well at its last look, 0 while it is unreadable, empty or malformed (the previous addresses stay in use); 1 without a file.",
		}),
		enqueueFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stripe_webhooks_enqueue_failures_total",
			Help: "Events stored but not queued because Redis failed; the sweeper queues them later.",
		}),
		batchFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stripe_webhooks_batch_insert_failures_total",
			Help: "Batch inserts that failed (a row Postgres refused, the database, the deadline); their deliveries were then stored one by one.",
		}),
		storeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "stripe_webhooks_store_duration_seconds", Help: "Time to store one delivery in Postgres.", Buckets: buckets,
		}),
		enqueueSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "stripe_webhooks_enqueue_duration_seconds", Help: "Time to queue one committed batch of events in Redis (one round trip).", Buckets: buckets,
		}),
	}
	m.secretFileUsable.Set(1)
	m.allowlistFileUsable.Set(1)
	reg.MustRegister(m.deliveries, m.byMode, m.secretFileUsable, m.allowlistFileUsable, m.enqueueFailures, m.batchFailures, m.storeSeconds, m.enqueueSeconds)
	reg.MustRegister(health.BackendUp(st, pool))
	return m
}
