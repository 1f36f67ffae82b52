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
	// jobs, if set, puts back a job whose event could not be taken,
	// without counting a fail, and files a job that names no event in the
	// dead set at once (queue.Enqueuer's Defer and Kill).
	jobs interface {
		Defer(ctx context.Context, job *work.Job, at time.Time, reason string) error
		Kill(ctx context.Context, job *work.Job, reason string) error
	}
}

// maxDeferral is the longest a job whose event could not be taken waits
// before it tries again: a database outage costs a job no attempt, and it
// runs within this long of the database's return.
const maxDeferral = 30 * time.Second

// maxDeferrals bounds how often one job is put back without an attempt:
// at maxDeferral apart, about three days (Stripe's own redelivery window).
// Past it, a run that cannot take its event counts as a failed attempt, so
// a job that can never be taken ends in the dead set rather than circling.
const maxDeferrals = 72 * 60 * 2

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
// database did not answer) puts the job back without counting a fail, or,
// past maxDeferrals, is counted with recorded=false and leaves the row
// untouched for the job's retry or the sweeper. A job whose arguments name
// no event goes to the dead set at once.
func (p *Processor) Process(job *work.Job) error {
	j, err := queue.JobFrom(job)
	if err != nil {
		return p.malformed(job, err)
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
	if err != nil && errors.Is(err, store.ErrNotAttempted) && p.putBack(log, job, err, elapsed) {
		return nil
	}
	if err != nil {
		p.failed(log, job, j, attempt, err, elapsed)
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

// malformed files a job whose arguments name no event in the dead set:
// no attempt can help it, and put back or retried it would circle forever,
// failing the group of every run. It is logged and counted.
func (p *Processor) malformed(job *work.Job, err error) error {
	p.metrics.malformed.Inc()
	log := p.logger.With("job_id", job.ID, "error", err)
	if p.jobs == nil {
		log.Error("malformed job: its arguments name no event")
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if kerr := p.jobs.Kill(ctx, job, "malformed: "+err.Error()); kerr != nil {
		log.Error("malformed job: its arguments name no event; it could not be moved to the dead set, so it fails as usual",
			"kill_error", kerr)
		return err
	}
	log.Error("malformed job: its arguments name no event; moved to the dead set without a retry")
	return nil
}

// putBack files a job whose event was not attempted (the database is
// unreachable, or the deadline passed while the job waited) in the retry
// set without counting a fail: counting it would send healthy events to
// the dead set during a long outage. It reports whether it did; not past
// maxDeferrals, nor when Redis refuses.
func (p *Processor) putBack(log *slog.Logger, job *work.Job, err error, elapsed float64) bool {
	n := queue.Deferrals(job)
	if p.jobs == nil {
		return false
	}
	if n >= maxDeferrals {
		log.Error("event not attempted for too long; counted as a failed attempt", "error", err, "deferred", n)
		return false
	}
	at := time.Now().Add(deferral(n))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	derr := p.jobs.Defer(ctx, job, at, "not attempted: "+err.Error())
	cancel()
	if derr != nil {
		log.Warn("could not put the job back; counted as a failed attempt", "error", derr)
		return false
	}
	p.metrics.deferred.Inc()
	p.metrics.jobSeconds.WithLabelValues("deferred").Observe(elapsed)
	log.Warn("event not attempted; its job is put back without counting an attempt", "error", err,
		"retry_at", at.UTC().Format(time.RFC3339), "deferred", n+1)
	if p.retryDue != nil {
		p.retryDue(at.Add(requeueLag))
	}
	return true
}

// failed counts and logs a failed attempt, which gocraft/work retries after
// the backoff or, on the last attempt, moves to the dead set.
func (p *Processor) failed(log *slog.Logger, job *work.Job, j queue.Job, attempt store.Attempt, err error, elapsed float64) {
	p.metrics.failed.WithLabelValues(j.EventType).Inc()
	p.metrics.jobSeconds.WithLabelValues("failed").Observe(elapsed)
	recorded := !errors.Is(err, store.ErrNotAttempted)
	if attempt.Final {
		log.Error("event failed its last attempt; its job goes to the dead set", "error", err, "recorded", recorded)
		return
	}
	log.Warn("event failed; retried with backoff", "error", err, "recorded", recorded,
		"retry_at", attempt.RetryAt.UTC().Format(time.RFC3339))
	if p.retryDue != nil {
		// gocraft/work counts the backoff from now, when it files the job
		// in the retry set.
		next := *job
		next.Fails++
		p.retryDue(time.Now().Add(time.Duration(p.backoff(&next))*time.Second + requeueLag))
	}
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

// groupFailed logs and counts a group transaction that failed; its jobs'
// events are then processed one by one, each failure recorded against its
// own event only.
func groupFailed(logger *slog.Logger, m *metrics) func(error, int) {
	return func(err error, jobs int) {
		m.groupFailures.Inc()
		logger.Warn("a group transaction failed; its jobs' events are processed one by one", "error", err, "jobs", jobs)
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
