package main

import (
	"context"
	"log/slog"
	"math"
	"time"

	"github.com/gocraft/work"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/handler"
)

// Processor runs process-webhook jobs: each job applies its stored event
// once in effect, within a deadline.
type Processor struct {
	logger  *slog.Logger
	store   *store.Store
	metrics *metrics
	timeout time.Duration
}

// NewProcessor returns a processor whose jobs each get timeout.
func NewProcessor(logger *slog.Logger, st *store.Store, m *metrics, timeout time.Duration) *Processor {
	return &Processor{logger: logger, store: st, metrics: m, timeout: timeout}
}

// Process is the gocraft/work handler of process-webhook. A returned error
// makes gocraft/work retry the job with backoff, then move it to the dead set.
func (p *Processor) Process(job *work.Job) error {
	j, err := queue.JobFrom(job)
	if err != nil {
		p.logger.Error("malformed job", "job_id", job.ID, "error", err)
		return err
	}
	log := p.logger.With("stripe_event_id", j.EventID, "event_type", j.EventType, "webhook_id", j.WebhookID,
		"job_id", job.ID, "attempt", job.Fails+1)
	// The deadline is the job's own: SIGTERM does not cut a running job short.
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	began := time.Now()
	outcome, _, err := p.store.ProcessEvent(ctx, j.WebhookID, handler.Apply)
	elapsed := time.Since(began).Seconds()
	if err != nil {
		p.metrics.failed.WithLabelValues(j.EventType).Inc()
		p.metrics.jobSeconds.WithLabelValues("failed").Observe(elapsed)
		log.Warn("event failed; gocraft/work retries it with backoff", "error", err)
		return err
	}
	p.metrics.jobSeconds.WithLabelValues(outcome.String()).Observe(elapsed)
	switch outcome {
	case store.Applied:
		p.metrics.processed.WithLabelValues(j.EventType).Inc()
		log.Info("event processed", "handled", handler.Handles(j.EventType))
	case store.AlreadyProcessed:
		log.Info("event already processed; nothing to do")
	case store.Missing:
		log.Warn("no stored event for this job (deleted by retention?); nothing to do")
	}
	return nil
}

// backoff waits base × 2^(fails-1) before the next attempt: 1, 2, 4, 8
// minutes with the default 60 s base. gocraft/work counts in seconds.
func backoff(base time.Duration) work.BackoffCalculator {
	return func(job *work.Job) int64 {
		fails := max(job.Fails, 1)
		secs := base.Seconds() * math.Pow(2, float64(min(fails-1, 30)))
		return int64(max(1, math.Ceil(min(secs, 7*24*3600))))
	}
}
