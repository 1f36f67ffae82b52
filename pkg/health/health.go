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
// ping Postgres and Redis at each scrape, both at once, so that a scrape
// takes at most Timeout however the backends hang.
func BackendUp(st *store.Store, pool *redis.Pool) prometheus.Collector {
	return &backendUp{
		desc: prometheus.NewDesc("stripe_webhooks_backend_up",
			"1 when the backend answers a ping at scrape time, else 0.", []string{"backend"}, nil),
		st: st, pool: pool,
	}
}

type backendUp struct {
	desc *prometheus.Desc
	st   *store.Store
	pool *redis.Pool
}

func (b *backendUp) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }

func (b *backendUp) Collect(ch chan<- prometheus.Metric) {
	redisErr := make(chan error, 1)
	go func() { redisErr <- Redis(context.Background(), b.pool) }()
	pgErr := Postgres(context.Background(), b.st)
	up := func(err error) float64 {
		if err != nil {
			return 0
		}
		return 1
	}
	ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, up(pgErr), "postgres")
	ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, up(<-redisErr), "redis")
}
