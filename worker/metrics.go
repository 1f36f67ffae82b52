package main

import (
	"context"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"stripe-webhooks/pkg/health"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
)

// metrics are the worker's Prometheus series, in a registry of its own.
type metrics struct {
	registry   *prometheus.Registry
	processed  *prometheus.CounterVec
	failed     *prometheus.CounterVec
	jobSeconds *prometheus.HistogramVec

	sweeps        prometheus.Counter
	sweeperQueued prometheus.Counter
	sweeperErrors prometheus.Counter
}

// heartbeatFresh is how recent a worker pool's heartbeat (every 5 s) must be
// for the pool to count as alive.
const heartbeatFresh = 30 * time.Second

func newMetrics(pool *redis.Pool, namespace string, st *store.Store) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		registry: reg,
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stripe_webhooks_events_processed_total",
			Help: "Events applied and marked processed, by event type.",
		}, []string{"event_type"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stripe_webhooks_events_failed_total",
			Help: "Failed processing attempts, by event type.",
		}, []string{"event_type"}),
		jobSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stripe_webhooks_job_duration_seconds",
			Help:    "Time to run one process-webhook job, by outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"outcome"}),
	}
	m.sweeps = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stripe_webhooks_sweeps_total", Help: "Completed sweeps (run by one replica per WEBHOOK_SWEEP_INTERVAL).",
	})
	m.sweeperQueued = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stripe_webhooks_sweeper_enqueued_total", Help: "Events the sweeper queued again because no job was waiting for them.",
	})
	m.sweeperErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stripe_webhooks_sweeper_errors_total", Help: "Sweeps cut short by a Redis error.",
	})
	reg.MustRegister(m.processed, m.failed, m.jobSeconds, m.sweeps, m.sweeperQueued, m.sweeperErrors)
	size := func(cmd, key string) func() float64 {
		return func() float64 {
			conn := pool.Get()
			defer conn.Close()
			n, err := redis.Int64(conn.Do(cmd, key))
			if err != nil {
				return -1
			}
			return float64(n)
		}
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stripe_webhooks_queue_depth", Help: "process-webhook jobs waiting (-1: Redis unreachable)."},
			size("LLEN", queue.ListKey(namespace))),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stripe_webhooks_retry_jobs", Help: "Jobs waiting for a retry (-1: Redis unreachable)."},
			size("ZCARD", queue.RetryKey(namespace))),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "stripe_webhooks_dead_jobs", Help: "Jobs in the dead set (-1: Redis unreachable)."},
			size("ZCARD", queue.DeadKey(namespace))),
	)
	reg.MustRegister(health.BackendUp(st, pool))
	client := work.NewClient(namespace, pool)
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stripe_webhooks_unprocessed_events",
			Help: "Stored events not yet processed (-1: Postgres unreachable).",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, err := st.CountUnprocessed(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stripe_webhooks_worker_pools_alive",
			Help: "Worker pools of this namespace with a heartbeat in the last 30 s (-1: Redis unreachable).",
		}, func() float64 {
			beats, err := client.WorkerPoolHeartbeats()
			if err != nil {
				return -1
			}
			alive := 0
			for _, b := range beats {
				if time.Since(time.Unix(b.HeartbeatAt, 0)) < heartbeatFresh {
					alive++
				}
			}
			return float64(alive)
		}),
	)
	return m
}
