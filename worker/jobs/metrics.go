package jobs

import (
	"context"
	"log/slog"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"

	"stripe-webhooks/pkg/health"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/handler"
)

// Metrics are the series of applying events: processed, failed, deferred
// and malformed jobs, group transactions that failed, same-second ties.
type Metrics struct {
	processed     *prometheus.CounterVec
	failed        *prometheus.CounterVec
	jobSeconds    *prometheus.HistogramVec
	deferred      prometheus.Counter
	malformed     prometheus.Counter
	groupFailures prometheus.Counter
	ties          *prometheus.CounterVec
}

// NewMetrics registers the series in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
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
		deferred: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stripe_webhooks_jobs_deferred_total",
			Help: "Jobs put back without an attempt counted: their event could not be taken (database unreachable, deadline passed while waiting).",
		}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stripe_webhooks_jobs_malformed_total",
			Help: "Jobs whose arguments name no event (webhook_id missing or not a uuid), moved to the dead set without a retry.",
		}),
		groupFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stripe_webhooks_group_failures_total",
			Help: "Group transactions that failed (a handler's error, the deadline, the database); their jobs' events were then processed one by one.",
		}),
		ties: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stripe_webhooks_same_second_ties_total",
			Help: "Events applied to an object (account, capability, external_account) that an event of the same created second had written, by how the tie was settled.",
		}, []string{"object", "settled"}),
	}
	for _, o := range []string{store.TieAccount, store.TieCapability, store.TieExternalAccount} {
		for _, s := range []string{store.TieChained, store.TieSameState, store.TieSameEvent, store.TieEarlier, store.TieKept, store.TieResync} {
			m.ties.WithLabelValues(o, s)
		}
	}
	m.ties.WithLabelValues(store.TieExternalAccount, store.TieDeletion)
	reg.MustRegister(m.processed, m.failed, m.jobSeconds, m.deferred, m.malformed, m.groupFailures, m.ties)
	return m
}

// AppliedAhead logs and counts each event a group applied before its own
// job ran (store.ApplierOptions.AppliedAhead); that job will find it
// processed.
func (m *Metrics) AppliedAhead(logger *slog.Logger) func(context.Context, store.WebhookEvent) {
	return func(ctx context.Context, e store.WebhookEvent) {
		m.processed.WithLabelValues(e.EventType).Inc()
		logger.InfoContext(ctx, "event processed", "stripe_event_id", e.StripeEventID, "event_type", e.EventType,
			"webhook_id", e.ID, "ahead_of_job", true, "handled", handler.Handles(e.EventType))
	}
}

// GroupFailed logs and counts a group transaction that failed
// (store.ApplierOptions.GroupFailed); its jobs' events are then processed
// one by one, each failure recorded against its own event only.
func (m *Metrics) GroupFailed(logger *slog.Logger) func(context.Context, error, int) {
	return func(ctx context.Context, err error, jobs int) {
		m.groupFailures.Inc()
		logger.WarnContext(ctx, "a group transaction failed; its jobs' events are processed one by one", "error", err, "jobs", jobs)
	}
}

// CountTie counts a same-second tie an applied event met (handler.Options.Tie).
func (m *Metrics) CountTie(t store.Tie) {
	m.ties.WithLabelValues(t.Object, t.Settled).Inc()
}

// backlog reports the queue's and the table's backlog at each scrape: Redis
// in two pipelined round trips and Postgres in one query, at once, within
// health.Timeout, so that a scrape never waits on a backend that hangs (its
// series then read -1).
type backlog struct {
	pool                                        *redis.Pool
	namespace                                   string
	st                                          *store.Store
	waiting, retrying, dead, alive, unprocessed *prometheus.Desc
}

// NewBacklogCollector reports the jobs of namespace waiting, retrying and
// dead, the pools alive, and the events st holds unprocessed.
func NewBacklogCollector(pool *redis.Pool, namespace string, st *store.Store) prometheus.Collector {
	desc := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &backlog{pool: pool, namespace: namespace, st: st,
		waiting:  desc("stripe_webhooks_queue_depth", "process-webhook jobs waiting (-1: Redis unreachable)."),
		retrying: desc("stripe_webhooks_retry_jobs", "Jobs waiting for a retry (-1: Redis unreachable)."),
		dead:     desc("stripe_webhooks_dead_jobs", "Jobs in the dead set (-1: Redis unreachable)."),
		alive: desc("stripe_webhooks_worker_pools_alive",
			"Worker pools of this namespace with a heartbeat in the last 30 s (-1: Redis unreachable)."),
		unprocessed: desc("stripe_webhooks_unprocessed_events", "Stored events not yet processed (-1: Postgres unreachable)."),
	}
}

func (c *backlog) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.waiting, c.retrying, c.dead, c.alive, c.unprocessed} {
		ch <- d
	}
}

func (c *backlog) Collect(ch chan<- prometheus.Metric) {
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
