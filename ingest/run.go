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

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripeevent"
	"stripe-webhooks/pkg/telemetry"
)

// batchesAtOnce is how many group-commit batches are in flight at once.
const batchesAtOnce = 2

// run starts the ingest and blocks until ctx is done or SIGTERM/SIGINT
// arrives, then lets in-flight requests finish and returns.
func run(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) error {
	cfg, err := config.LoadIngest(environ)
	if err != nil {
		return err
	}
	if len(args) > 1 {
		return &config.UsageError{Msg: fmt.Sprintf("ingest: unexpected arguments %q", args[1:]),
			Usage: "usage: ingest (no arguments; configuration comes from the environment, see README.md)"}
	}
	logger := cfg.Log.Logger(stdout)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Before the store and the server: with tracing on, both are traced.
	stopTracing, err := telemetry.Setup(ctx, "stripe-webhooks-ingest", logger)
	if err != nil {
		return &config.Error{Problems: []string{err.Error()}}
	}
	defer flushTraces(stopTracing, logger)

	st, err := store.Open(cfg.Database.URL, store.Options{MaxConns: 16, Logger: logger})
	if err != nil {
		return err
	}
	defer st.Close()
	pool := queue.NewPool(cfg.Redis, 64)
	defer pool.Close()
	enqueuer := queue.NewEnqueuer(cfg.Redis.Namespace, pool)
	m := newMetrics(st, pool)
	// Group commit: concurrent deliveries share one INSERT and one commit;
	// then their jobs are queued in one round trip to Redis. Two batches are
	// in flight at once: one gathers while the other commits. Four made
	// smaller batches, and Postgres spent more per delivery.
	inserter, err := st.NewInserter(store.InserterOptions{Batches: batchesAtOnce, MaxBatch: 128,
		AfterCommit: queueCommitted(enqueuer, m, cfg.EnqueueTimeout),
		BatchFailed: func(err error, deliveries int) {
			m.batchFailures.Inc()
			logger.Warn("a batch insert failed; its deliveries are stored one by one", "error", err, "deliveries", deliveries)
		}})
	if err != nil {
		return err
	}
	defer inserter.Close()

	verifier := stripeevent.NewVerifier(cfg.WebhookSecrets)
	if cfg.WebhookSecretFile != "" {
		secrets := newSecretFile(cfg.WebhookSecretFile, cfg.WebhookSecrets, verifier, logger)
		secrets.usable = m.secretFileUsable
		if err := secrets.Start(ctx); err != nil {
			return err
		}
		defer secrets.Stop()
	}
	allowed, err := allowlistFrom(cfg, logger)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	if allowed != nil && cfg.IPAllowlistFile != "" {
		w := watchAllowlistFile(cfg.IPAllowlistFile, allowed, logger)
		w.usable = m.allowlistFileUsable
		if err := w.Start(ctx); err != nil {
			return err
		}
		defer w.Stop()
	}
	handler, err := NewServer(Deps{
		Logger:          logger,
		Config:          cfg,
		Store:           st,
		Inserter:        inserter,
		Redis:           pool,
		Metrics:         m,
		Verifier:        verifier,
		Allowlist:       allowed,
		RejectPerMinute: cfg.RejectRateLimit,
	})
	if err != nil {
		return err
	}
	// Headers must arrive within readHeaderTimeout; the webhook handler
	// then gives the body WEBHOOK_BODY_TIMEOUT from when it starts reading
	// it. ReadTimeout is their sum, the bound where no handler sets one. The
	// write deadline, counted from the headers, leaves room for the body,
	// the store and the answer.
	const readHeaderTimeout = 5 * time.Second
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout + cfg.BodyTimeout,
		WriteTimeout:      cfg.BodyTimeout + storeTimeout + 10*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", cfg.HTTPPort))
	if err != nil {
		return fmt.Errorf("ingest: listen: %w", err)
	}
	logger.Info("ingest listening", "addr", ln.Addr().String(), "namespace", cfg.Redis.Namespace,
		"secrets", len(cfg.WebhookSecrets), "max_body_bytes", cfg.MaxBodyBytes)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("ingest: serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("ingest shutting down: finishing in-flight requests", "timeout", cfg.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("ingest: shutdown: %w", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ingest: serve: %w", err)
	}
	logger.Info("ingest stopped")
	return nil
}

// flushTraces sends the spans still queued, waiting at most 5 s for the
// collector.
func flushTraces(stop func(context.Context) error, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		logger.Warn("tracing: spans still queued could not be sent", "error", err)
	}
}
