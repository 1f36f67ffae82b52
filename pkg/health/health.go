// Package health checks the two backends both services depend on.
package health

import (
	"context"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
)

// Timeout bounds one check.
const Timeout = 2 * time.Second

// Postgres reports whether Postgres answers within Timeout.
func Postgres(ctx context.Context, st *store.Store) error {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	return st.Ping(ctx)
}

// Redis reports whether Redis answers within Timeout: a Redis that accepts
// connections but never answers is reported down, not waited for.
func Redis(ctx context.Context, pool *redis.Pool) error {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	return queue.Ping(ctx, pool)
}

// BackendUp returns the stripe_webhooks_backend_up{backend} gauges, which
// ping Postgres and Redis at each scrape.
func BackendUp(st *store.Store, pool *redis.Pool) []prometheus.Collector {
	gauge := func(backend string, ping func() error) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "stripe_webhooks_backend_up",
			Help:        "1 when the backend answers a ping at scrape time, else 0.",
			ConstLabels: prometheus.Labels{"backend": backend},
		}, func() float64 {
			if ping() != nil {
				return 0
			}
			return 1
		})
	}
	return []prometheus.Collector{
		gauge("postgres", func() error { return Postgres(context.Background(), st) }),
		gauge("redis", func() error { return Redis(context.Background(), pool) }),
	}
}
