package main

import (
	"context"
	"encoding/json"
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
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/health"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripeapi"
	"stripe-webhooks/worker/handler"
)

// deadSetSize is how many dead jobs are kept (the event rows keep their
// error regardless).
const deadSetSize = 1000

// claimAhead is how many events whose jobs are still queued one group may
// apply besides its own jobs' events. In a backlog, Postgres then works in
// large groups, and those jobs find their events done (one round trip).
const claimAhead = 32

// groupsAtOnce is how many group transactions one process has in flight:
// while one waits on Postgres, the next is built and applied. Two drained a
// backlog with one worker process about 1.5 times as fast as one; three did
// no better than two.
const groupsAtOnce = 2

// poolContext is the gocraft/work job context; handlers need none.
type poolContext struct{}

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

	st, err := store.Open(cfg.Database.URL, store.Options{MaxConns: cfg.Concurrency + 4, Logger: logger, AsyncCommit: true})
	if err != nil {
		return err
	}
	defer st.Close()
	// gocraft/work holds a connection per busy worker plus its fetcher,
	// heartbeater, requeuers, reaper and observer.
	pool := queue.NewPool(cfg.Redis, 2*cfg.Concurrency+10)
	defer pool.Close()
	m := newMetrics(pool, cfg.Redis.Namespace, st)
	retryBackoff := backoff(cfg.RetryBaseDelay)
	// Jobs running at the same moment are applied in one transaction, with
	// up to claimAhead events whose jobs are still queued; groupsAtOnce such
	// transactions at a time.
	// With a Stripe API key, a same-second tie the events cannot settle is
	// settled by a resync of the account (the periodic task below).
	apply := handler.ApplyWith(handler.Options{Livemode: cfg.Livemode, ResyncTies: cfg.StripeAPI.Key != "", Tie: m.countTie})
	applier := st.NewApplier(apply, store.ApplierOptions{Flushers: groupsAtOnce, MaxJobs: cfg.Concurrency, Ahead: claimAhead,
		Timeout: cfg.JobTimeout, AppliedAhead: appliedAhead(logger, m), AccountOf: handler.AccountIn(cfg.Livemode),
		GroupFailed: groupFailed(logger, m)})
	defer applier.Close() // after wp.Stop: no job is left to answer
	proc := NewProcessor(logger, applier, m, cfg.JobTimeout, cfg.MaxRetries, retryBackoff)

	wp := work.NewWorkerPool(poolContext{}, uint(cfg.Concurrency), cfg.Redis.Namespace, pool)
	wp.JobWithOptions(queue.JobName, work.JobOptions{
		MaxFails: uint(cfg.MaxRetries),
		Backoff:  retryBackoff,
	}, proc.Process)

	srv := &http.Server{
		Handler:           workerRoutes(st, pool, m),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", cfg.HTTPPort))
	if err != nil {
		return fmt.Errorf("worker: listen: %w", err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	// Idle workers take a new job as soon as it is queued, not at their
	// next poll (up to 5 s later).
	waker := NewWaker(logger, cfg.Redis, wp.Drain)
	proc.retryDue = waker.WakeAt
	enqueuer := queue.NewEnqueuer(cfg.Redis.Namespace, pool)
	proc.jobs = enqueuer
	wp.Start()
	_ = waker.Start(ctx)
	sweeper := NewSweeper(logger, st, enqueuer, m, cfg.SweepAfter)
	tasks := []*periodic{newPeriodic("sweeper", cfg.SweepInterval, st, logger, func(ctx context.Context) error {
		_, err := sweeper.Sweep(ctx)
		return err
	})}
	if cfg.Retention > 0 {
		retention := NewRetention(logger, st, cfg.Retention)
		tasks = append(tasks, newPeriodic("retention", retentionEvery, st, logger, func(ctx context.Context) error {
			_, err := retention.Run(ctx)
			return err
		}))
	}
	if cfg.StripeAPI.Key != "" {
		api := stripeapi.New(cfg.StripeAPI, logger)
		reconciler := NewReconciler(logger, st, enqueuer, api, m, cfg.Livemode, cfg.Retention)
		resyncer := &Resyncer{logger: logger.With("task", "resync"), store: st, api: api, metrics: m}
		reconciler.resync = resyncer
		tasks = append(tasks, newPeriodic("reconcile", cfg.ReconcileInterval, st, logger, func(ctx context.Context) error {
			return reconcilePeriodically(ctx, reconciler, m)
		}), newPeriodic("tie-resync", tieResyncEvery(cfg.ResyncDebounce), st, logger, func(ctx context.Context) error {
			return resyncer.ResyncTies(ctx, cfg.ResyncDebounce)
		}))
	} else {
		logger.Info("periodic reconcile off: no STRIPE_API_KEY; events Stripe never delivers stay missing, " +
			"and a same-second tie the events cannot settle keeps the state applied first")
	}
	for _, t := range tasks {
		_ = t.Start(ctx)
	}
	defer func() {
		for _, t := range tasks {
			t.Stop()
		}
	}()
	logger.Info("worker started", "namespace", cfg.Redis.Namespace, "concurrency", cfg.Concurrency,
		"max_retries", cfg.MaxRetries, "retry_base_delay", cfg.RetryBaseDelay.String(),
		"job_timeout", cfg.JobTimeout.String(), "sweep_interval", cfg.SweepInterval.String(),
		"sweep_after", cfg.SweepAfter.String(), "retention", cfg.Retention.String(), "http_addr", ln.Addr().String())

	trim := time.NewTicker(30 * time.Second)
	defer trim.Stop()
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case err := <-serveErr:
			waker.Stop()
			wp.Stop()
			return fmt.Errorf("worker: serve: %w", err)
		case <-trim.C:
			trimCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			n, err := queue.TrimDead(trimCtx, pool, cfg.Redis.Namespace, deadSetSize)
			cancel()
			if err != nil {
				logger.Warn("could not trim the dead set", "error", err)
			} else if n > 0 {
				logger.Info("trimmed the dead set", "removed", n, "kept", deadSetSize)
			}
		}
	}
	logger.Info("worker stopping: no new jobs; running jobs finish within their deadline")
	waker.Stop()
	wp.Stop()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("worker: serve: %w", err)
	}
	logger.Info("worker stopped")
	return nil
}

// workerRoutes serves the worker's probes and metrics.
func workerRoutes(st *store.Store, pool *redis.Pool, m *metrics) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	// Ready only with both backends: a worker can do nothing without either.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rep := map[string]string{"status": "ready", "database": "up", "redis": "up"}
		status := http.StatusOK
		redisErr := make(chan error, 1) // both at once: at most one deadline in all
		go func() { redisErr <- health.Redis(r.Context(), pool) }()
		if err := health.Postgres(r.Context(), st); err != nil {
			rep["database"], rep["status"], status = "down", "not ready", http.StatusServiceUnavailable
		}
		if err := <-redisErr; err != nil {
			rep["redis"], rep["status"], status = "down", "not ready", http.StatusServiceUnavailable
		}
		writeJSON(w, status, rep)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
