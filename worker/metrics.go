package main

import (
	"context"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"stripe-webhooks/pkg/health"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/handler"
)

// metrics are the worker's Prometheus series, in a registry of its own.
type metrics struct {
	registry   *prometheus.Registry
	processed  *prometheus.CounterVec
	failed     *prometheus.CounterVec
	jobSeconds *prometheus.HistogramVec
	deferred   prometheus.Counter
	malformed  prometheus.Counter
	// groupFailures counts group transactions that failed and fell back
	// to one event a transaction.
	groupFailures prometheus.Counter

	sweeps        prometheus.Counter
	sweeperLost   prometheus.Counter
	sweeperQueued prometheus.Counter
	sweeperErrors prometheus.Counter

	reconcileMissing     *prometheus.CounterVec
	reconcileRuns        *prometheus.CounterVec
	reconcileLastSuccess prometheus.Gauge
	reconcileSkipped     prometheus.Counter
	resyncedAccounts     prometheus.Counter

	sameSecondTies *prometheus.CounterVec
}

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
	m.deferred = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stripe_webhooks_jobs_deferred_total",
		Help: "Jobs put back without an attempt counted: their event could not be taken (database unreachable, deadline passed while waiting).",
	})
	m.malformed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stripe_webhooks_jobs_malformed_total",
		Help: "Jobs whose arguments name no event (webhook_id missing or not a uuid), moved to the dead set without a retry.",
	})
	m.groupFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stripe_webhooks_group_failures_total",
		Help: "Group transactions that failed (a handler's error, the deadline, the database); their jobs' events were then processed one by one.",
	})
	m.sweeps = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stripe_webhooks_sweeps_total", Help: "Completed sweeps (run by one replica per WEBHOOK_SWEEP_INTERVAL).",
	})
	m.sweeperLost = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stripe_webhooks_sweeper_lost_total",
		Help: "Events the sweeper found with no job waiting, retrying or in progress, and queued again.",
	})
	m.sweeperQueued = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stripe_webhooks_sweeper_enqueued_total",
		Help: "Jobs the sweeper added for lost events (one the ingest queued meanwhile is merged, not counted).",
	})
	m.sweeperErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stripe_webhooks_sweeper_errors_total", Help: "Sweeps cut short by a Redis error.",
	})
	m.reconcileMissing = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stripe_webhooks_reconcile_missing_events_total",
		Help: "Events reconcile found in Stripe's API but not stored (never delivered), and stored, by event type.",
	}, []string{"event_type"})
	m.reconcileRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stripe_webhooks_reconcile_runs_total",
		Help: "Periodic reconcile runs, by outcome (ok: every account it reached was listed or skipped; failed: an account or the whole run could not be listed).",
	}, []string{"outcome"})
	m.reconcileLastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "stripe_webhooks_reconcile_last_success_timestamp_seconds",
		Help: "Unix time of the last periodic reconcile that ended ok (0: none yet in this process).",
	})
	m.reconcileSkipped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stripe_webhooks_reconcile_skipped_accounts_total",
		Help: "Connected accounts periodic reconcile skipped because the platform's access to them is revoked (deauthorized, or refused by Stripe).",
	})
	m.resyncedAccounts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stripe_webhooks_resynced_accounts_total",
		Help: "Connected accounts whose state resync fetched from Stripe's API and applied.",
	})
	m.sameSecondTies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stripe_webhooks_same_second_ties_total",
		Help: "Events applied to an object (account, capability, external_account) that an event of the same created second had written, by how the tie was settled.",
	}, []string{"object", "settled"})
	for _, o := range []string{store.TieAccount, store.TieCapability, store.TieExternalAccount} {
		for _, s := range []string{store.TieChained, store.TieSameState, store.TieSameEvent, store.TieEarlier, store.TieKept, store.TieResync} {
			m.sameSecondTies.WithLabelValues(o, s)
		}
	}
	m.sameSecondTies.WithLabelValues(store.TieExternalAccount, store.TieDeletion)
	reg.MustRegister(m.sameSecondTies)
	// Every series from 0: increase() never counts the first increment of a
	// series that appears at 1, and the alerts are about exactly that one.
	for _, o := range []string{"ok", "failed"} {
		m.reconcileRuns.WithLabelValues(o)
	}
	for _, t := range handler.Types() {
		m.reconcileMissing.WithLabelValues(t)
	}
	reg.MustRegister(m.reconcileMissing, m.reconcileRuns, m.reconcileLastSuccess, m.reconcileSkipped, m.resyncedAccounts)
	reg.MustRegister(m.processed, m.failed, m.jobSeconds, m.deferred, m.malformed, m.groupFailures, m.sweeps, m.sweeperLost, m.sweeperQueued, m.sweeperErrors)
	reg.MustRegister(health.BackendUp(st, pool), newBacklogCollector(pool, namespace, st))
	return m
}

// backlogCollector reports the queue's and the table's backlog at each
// scrape: Redis in two pipelined round trips and Postgres in one query, at
// once, within health.Timeout, so that a scrape never waits on a backend
// that hangs (its series then read -1).
type backlogCollector struct {
	pool                                        *redis.Pool
	namespace                                   string
	st                                          *store.Store
	waiting, retrying, dead, alive, unprocessed *prometheus.Desc
}

func newBacklogCollector(pool *redis.Pool, namespace string, st *store.Store) *backlogCollector {
	desc := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &backlogCollector{pool: pool, namespace: namespace, st: st,
		waiting:  desc("stripe_webhooks_queue_depth", "process-webhook jobs waiting (-1: Redis unreachable)."),
		retrying: desc("stripe_webhooks_retry_jobs", "Jobs waiting for a retry (-1: Redis unreachable)."),
		dead:     desc("stripe_webhooks_dead_jobs", "Jobs in the dead set (-1: Redis unreachable)."),
		alive: desc("stripe_webhooks_worker_pools_alive",
			"Worker pools of this namespace with a heartbeat in the last 30 s (-1: Redis unreachable)."),
		unprocessed: desc("stripe_webhooks_unprocessed_events", "Stored events not yet processed (-1: Postgres unreachable)."),
	}
}

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.waiting, c.retrying, c.dead, c.alive, c.unprocessed} {
		ch <- d
	}
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), health.Timeout)
	defer cancel()
	type result struct {
		stats queue.Stats
		err   error
	}
	fromRedis := make(chan result, 1)
	go func() {
		s, err := queue.ReadStats(ctx, c.pool, c.namespace)
		fromRedis <- result{s, err}
	}()
	unprocessed, err := c.st.CountUnprocessed(ctx)
	if err != nil {
		unprocessed = -1
	}
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	gauge(c.unprocessed, unprocessed)
	r := <-fromRedis
	if r.err != nil {
		r.stats = queue.Stats{Waiting: -1, Retrying: -1, Dead: -1, PoolsAlive: -1}
	}
	gauge(c.waiting, r.stats.Waiting)
	gauge(c.retrying, r.stats.Retrying)
	gauge(c.dead, r.stats.Dead)
	gauge(c.alive, r.stats.PoolsAlive)
}

// countTie counts a same-second tie the worker applied (handler.Options.Tie).
func (m *metrics) countTie(t store.Tie) {
	m.sameSecondTies.WithLabelValues(t.Object, t.Settled).Inc()
}
