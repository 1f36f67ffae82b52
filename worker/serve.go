package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/health"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripeapi"
	"stripe-webhooks/worker/handler"
	"stripe-webhooks/worker/jobs"
	"stripe-webhooks/worker/maintenance"
	"stripe-webhooks/worker/reconcile"
)

// claimAhead is how many events whose jobs are still queued one group may
// apply besides its own jobs' events. In a backlog, Postgres then works in
// large groups, and those jobs find their events done (one round trip).
const claimAhead = 32

// groupsAtOnce is how many group transactions one process has in flight:
// while one waits on Postgres, the next is built and applied. Two drained a
// backlog with one worker process about 1.5 times as fast as one; three did
// no better than two.
const groupsAtOnce = 2

// task is a background service of the worker process.
type task interface {
	Start(ctx context.Context) error
	Stop()
}

// runPool runs the worker pool until SIGTERM/SIGINT (or ctx), then stops
// taking jobs, lets running ones finish within their deadline, and returns.
func runPool(ctx context.Context, args []string, environ []string, stdout io.Writer) error {
	if len(args) > 0 {
		return &config.UsageError{Msg: fmt.Sprintf("worker: unexpected arguments %q", args), Usage: usage}
	}
	cfg, err := config.LoadWorker(environ)
	if err != nil {
		return err
	}
	logger := cfg.Log.Logger(stdout)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	flushTraces, err := setupTracing(ctx, logger)
	if err != nil {
		return err
	}
	defer flushTraces()
	st, err := store.Open(cfg.Database.URL, store.Options{MaxConns: cfg.Concurrency + 4, Logger: logger, AsyncCommit: true})
	if err != nil {
		return err
	}
	defer st.Close()
	// gocraft/work holds a connection per busy worker plus its fetcher,
	// heartbeater, requeuers, reaper and observer.
	pool := queue.NewPool(cfg.Redis, 2*cfg.Concurrency+10)
	defer pool.Close()
	reg := newRegistry(st, pool, cfg.Redis.Namespace)
	p := newJobPool(cfg, logger, st, pool, jobs.NewMetrics(reg))
	defer p.applier.Close() // after the pool's Stop: no job is left to answer
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", cfg.HTTPPort))
	if err != nil {
		return fmt.Errorf("worker: listen: %w", err)
	}
	srv := probeServer(st, pool, reg, logger)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	p.start(ctx)
	services := backgroundServices(cfg, logger, st, pool, reg)
	for _, s := range services {
		_ = s.Start(ctx)
	}
	logger.Info("worker started", "namespace", cfg.Redis.Namespace, "concurrency", cfg.Concurrency,
		"max_retries", cfg.MaxRetries, "retry_base_delay", cfg.RetryBaseDelay.String(),
		"job_timeout", cfg.JobTimeout.String(), "sweep_interval", cfg.SweepInterval.String(),
		"sweep_after", cfg.SweepAfter.String(), "retention", cfg.Retention.String(), "http_addr", ln.Addr().String())
	err = waitForStop(ctx, serveErr, logger)
	p.stop()
	for _, s := range services {
		s.Stop()
	}
	if err != nil {
		return err
	}
	return shutdown(srv, serveErr, logger)
}

// jobPool is the gocraft/work pool and what runs its jobs.
type jobPool struct {
	work    *work.WorkerPool
	waker   *jobs.Waker
	applier *store.Applier
}

// newJobPool wires the pool: the applier (group commit, looking ahead),
// the processor of its jobs, and the waker that ends its idle sleep.
func newJobPool(cfg config.Worker, logger *slog.Logger, st *store.Store, pool *redis.Pool, m *jobs.Metrics) *jobPool {
	// With a Stripe API key, a same-second tie the events cannot settle is
	// settled by a resync of the account (a background service).
	apply := handler.ApplyWith(handler.Options{Livemode: cfg.Livemode, ResyncTies: cfg.StripeAPI.Key != "", Tie: m.CountTie})
	applier := st.NewApplier(apply, store.ApplierOptions{Groups: groupsAtOnce, MaxJobs: cfg.Concurrency, Ahead: claimAhead,
		Timeout: cfg.JobTimeout, AppliedAhead: m.AppliedAhead(logger), AccountOf: handler.AccountIn(cfg.Livemode),
		GroupFailed: m.GroupFailed(logger)})
	p := &jobPool{applier: applier}
	// Idle workers take a new job as soon as it is queued, not at their
	// next poll (up to 5 s later).
	p.waker = jobs.NewWaker(logger, cfg.Redis, func() { p.work.Drain() })
	retries := jobs.RetryPolicy{MaxAttempts: cfg.MaxRetries, BaseDelay: cfg.RetryBaseDelay}
	proc := jobs.NewProcessor(jobs.ProcessorOptions{Logger: logger, Applier: applier, Metrics: m, Timeout: cfg.JobTimeout,
		Retries: retries, Jobs: queue.NewEnqueuer(cfg.Redis.Namespace, pool), RetryDue: p.waker.WakeAt})
	p.work = work.NewWorkerPool(struct{}{}, uint(cfg.Concurrency), cfg.Redis.Namespace, pool)
	p.work.JobWithOptions(queue.JobName, retries.JobOptions(), proc.Process)
	return p
}

func (p *jobPool) start(ctx context.Context) {
	p.work.Start()
	_ = p.waker.Start(ctx)
}

// stop stops taking jobs and waits for the running ones (each within its
// deadline). The waker goes first, so that no Drain starts on a stopped pool.
func (p *jobPool) stop() {
	p.waker.Stop()
	p.work.Stop()
}

// backgroundServices are the worker's tasks besides the pool: the sweeper,
// the partitions ahead, retention and dead-set trimming, and with a Stripe API key periodic
// reconcile and the resyncs same-second ties ask for.
func backgroundServices(cfg config.Worker, logger *slog.Logger, st *store.Store, pool *redis.Pool, reg prometheus.Registerer) []task {
	enqueuer := queue.NewEnqueuer(cfg.Redis.Namespace, pool)
	sweeper := maintenance.NewSweeper(logger, st, enqueuer, maintenance.NewMetrics(reg), cfg.SweepAfter)
	partitions := maintenance.NewPartitions(logger, st)
	services := []task{
		maintenance.NewPeriodic("sweeper", cfg.SweepInterval, st, logger, func(ctx context.Context) error {
			_, err := sweeper.Sweep(ctx)
			return err
		}),
		maintenance.NewDeadSetTrimmer(logger, pool, cfg.Redis.Namespace),
		maintenance.NewPeriodic("partitions", maintenance.PartitionsEvery, st, logger, func(ctx context.Context) error {
			_, err := partitions.Run(ctx)
			return err
		}),
	}
	if cfg.Retention > 0 {
		retention := maintenance.NewRetention(logger, st, cfg.Retention)
		services = append(services, maintenance.NewPeriodic("retention", maintenance.RetentionEvery, st, logger,
			func(ctx context.Context) error {
				_, err := retention.Run(ctx)
				return err
			}))
	}
	rm := reconcile.NewMetrics(reg)
	if cfg.StripeAPI.Key == "" {
		logger.Info("periodic reconcile off: no STRIPE_API_KEY; events Stripe never delivers stay missing, " +
			"and a same-second tie the events cannot settle keeps the state applied first")
		return services
	}
	api := stripeapi.New(cfg.StripeAPI, logger)
	resyncer := reconcile.NewResyncer(logger, st, api, rm)
	reconciler := reconcile.New(reconcile.Options{Logger: logger, Store: st, Enqueuer: enqueuer, API: api, Metrics: rm,
		Livemode: cfg.Livemode, Retention: cfg.Retention, Resyncer: resyncer})
	return append(services,
		maintenance.NewPeriodic("reconcile", cfg.ReconcileInterval, st, logger, reconciler.Periodically),
		maintenance.NewPeriodic("tie-resync", reconcile.TieResyncEvery(cfg.ResyncDebounce), st, logger,
			func(ctx context.Context) error { return resyncer.ResyncTies(ctx, cfg.ResyncDebounce) }))
}

// newRegistry is the worker's /metrics: Go and process series, the
// backends' and the backlog's gauges; each capability adds its own.
func newRegistry(st *store.Store, pool *redis.Pool, namespace string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(health.BackendUp(st, pool), jobs.NewBacklogCollector(pool, namespace, st))
	return reg
}

// waitForStop waits for ctx (SIGTERM) or the probe server's failure.
func waitForStop(ctx context.Context, serveErr chan error, logger *slog.Logger) error {
	select {
	case <-ctx.Done():
		logger.Info("worker stopping: no new jobs; running jobs finish within their deadline")
		return nil
	case err := <-serveErr:
		return fmt.Errorf("worker: serve: %w", err)
	}
}

// shutdown stops the probe server within 5 s.
func shutdown(srv *http.Server, serveErr chan error, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("worker: serve: %w", err)
	}
	logger.Info("worker stopped")
	return nil
}
