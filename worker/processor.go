package main

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"time"

	"github.com/gocraft/work"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/handler"
)

// Processor runs process-webhook jobs: each job applies its stored event
// once in effect, each attempt within a deadline.
type Processor struct {
	logger   *slog.Logger
	applier  *store.Applier
	metrics  *metrics
	timeout  time.Duration
	maxFails int64
	backoff  work.BackoffCalculator
	// retryDue, if set, is told when a failed job's retry is back in the
	// queue (the Waker wakes the pool then).
	retryDue func(time.Time)
	// deferrer, if set, puts back a job whose event could not be taken,
	// without counting a fail (queue.Enqueuer.Defer).
	deferrer interface {
		Defer(ctx context.Context, job *work.Job, at time.Time, reason string) error
	}
}

// maxDeferral is the longest a job whose event could not be taken waits
// before it tries again: a database outage costs a job no attempt, and it
// runs within this long of the database's return.
const maxDeferral = 30 * time.Second

// deferral is the wait before a job put back n times (0, 1, …) runs again:
// 1, 2, 4, … seconds, at most maxDeferral.
func deferral(n int) time.Duration {
	return min(time.Duration(1<<min(n, 10))*time.Second, maxDeferral)
}

// requeueLag is how long after a retry's due time gocraft/work's requeuer,
// which looks every second, has surely moved it back to the queue.
const requeueLag = 1100 * time.Millisecond

// NewProcessor returns a processor whose jobs each get timeout, and whose
// failures are retried after backoff until maxFails attempts.
func NewProcessor(logger *slog.Logger, applier *store.Applier, m *metrics, timeout time.Duration, maxFails int, backoff work.BackoffCalculator) *Processor {
	return &Processor{logger: logger, applier: applier, metrics: m, timeout: timeout, maxFails: int64(maxFails), backoff: backoff}
}

// attempt says what gocraft/work does if this run of job fails: it counts
// one more fail, then retries after the backoff or, at maxFails, kills it.
func (p *Processor) attempt(job *work.Job) store.Attempt {
	fails := job.Fails + 1
	if fails >= p.maxFails {
		return store.Attempt{Final: true}
	}
	next := *job
	next.Fails = fails
	return store.Attempt{RetryAt: time.Now().Add(time.Duration(p.backoff(&next)) * time.Second)}
}

// Process is the gocraft/work handler of process-webhook. A returned error
// makes gocraft/work retry the job with backoff, then move it to the dead set.
// Only a failure of the event's own handler is recorded on its row; one
// that came before it ran (the job's deadline passed while it waited, the
// database did not answer) is logged with recorded=false, and leaves the
// row untouched for the job's retry or the sweeper.
func (p *Processor) Process(job *work.Job) error {
	j, err := queue.JobFrom(job)
	if err != nil {
		p.logger.Error("malformed job", "job_id", job.ID, "error", err)
		return err
	}
	log := p.logger.With("stripe_event_id", j.EventID, "event_type", j.EventType, "webhook_id", j.WebhookID,
		"job_id", job.ID, "attempt", job.Fails+1)
	// The deadline is the job's own: SIGTERM does not cut a running job short.
	// It bounds the wait for the applier to take the event; each transaction
	// the event is then applied in has a deadline of the same length.
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	began := time.Now()
	attempt := p.attempt(job)
	outcome, _, err := p.applier.Process(ctx, j.WebhookID, attempt)
	elapsed := time.Since(began).Seconds()
	if err != nil && errors.Is(err, store.ErrNotAttempted) && p.deferrer != nil {
		// Nothing of the event ran: the database is unreachable, or the
		// deadline passed while the job waited. Counting that as a fail
		// would send healthy events to the dead set during a long outage.
		at := time.Now().Add(deferral(queue.Deferrals(job)))
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
		derr := p.deferrer.Defer(dctx, job, at, "not attempted: "+err.Error())
		dcancel()
		if derr == nil {
			p.metrics.deferred.Inc()
			p.metrics.jobSeconds.WithLabelValues("deferred").Observe(elapsed)
			log.Warn("event not attempted; its job is put back without counting an attempt", "error", err,
				"retry_at", at.UTC().Format(time.RFC3339), "deferred", queue.Deferrals(job)+1)
			if p.retryDue != nil {
				p.retryDue(at.Add(requeueLag))
			}
			return nil
		}
		log.Warn("could not put the job back; counted as a failed attempt", "error", derr)
	}
	if err != nil {
		p.metrics.failed.WithLabelValues(j.EventType).Inc()
		p.metrics.jobSeconds.WithLabelValues("failed").Observe(elapsed)
		recorded := !errors.Is(err, store.ErrNotAttempted)
		if attempt.Final {
			log.Error("event failed its last attempt; its job goes to the dead set", "error", err, "recorded", recorded)
		} else {
			log.Warn("event failed; retried with backoff", "error", err, "recorded", recorded,
				"retry_at", attempt.RetryAt.UTC().Format(time.RFC3339))
			if p.retryDue != nil {
				// gocraft/work counts the backoff from now, when it files the
				// job in the retry set.
				next := *job
				next.Fails++
				p.retryDue(time.Now().Add(time.Duration(p.backoff(&next))*time.Second + requeueLag))
			}
		}
		return err
	}
	p.metrics.jobSeconds.WithLabelValues(outcome.String()).Observe(elapsed)
	switch outcome {
	case store.Applied:
		p.metrics.processed.WithLabelValues(j.EventType).Inc()
		log.Info("event processed", "handled", handler.Handles(j.EventType))
	case store.AlreadyProcessed:
		// The usual fate of a job whose event a group applied ahead of it.
		log.Debug("event already processed; nothing to do")
	case store.Missing:
		log.Warn("no stored event for this job (deleted by retention?); nothing to do")
	}
	return nil
}

// appliedAhead logs and counts each event a group applied before its own
// job ran; that job will find it processed.
func appliedAhead(logger *slog.Logger, m *metrics) func(store.WebhookEvent) {
	return func(e store.WebhookEvent) {
		m.processed.WithLabelValues(e.EventType).Inc()
		logger.Info("event processed", "stripe_event_id", e.StripeEventID, "event_type", e.EventType,
			"webhook_id", e.ID, "ahead_of_job", true, "handled", handler.Handles(e.EventType))
	}
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
