package jobs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/gocraft/work"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/handler"
)

// Filer files jobs in gocraft/work's retry and dead sets without a fail
// counted by gocraft/work itself (queue.Enqueuer).
type Filer interface {
	// Defer puts job back, to run again at at, without counting a fail.
	Defer(ctx context.Context, job *work.Job, at time.Time, reason string) error
	// Kill files job in the dead set at once.
	Kill(ctx context.Context, job *work.Job, reason string) error
}

// ProcessorOptions are what a Processor runs with.
type ProcessorOptions struct {
	Logger  *slog.Logger
	Applier *store.Applier
	Metrics *Metrics
	// Timeout bounds the wait for the applier to take a job's event
	// (WEBHOOK_JOB_TIMEOUT); each transaction then has the same.
	Timeout time.Duration
	Retries RetryPolicy
	// Jobs, if set, puts back a job whose event could not be taken and
	// kills a job that names no event; without it both fail as usual.
	Jobs Filer
	// RetryDue, if set, is told when a failed or deferred job is back in
	// the queue (Waker.WakeAt wakes the pool then).
	RetryDue func(time.Time)
}

// Processor runs process-webhook jobs: each job applies its stored event
// once in effect, each attempt within a deadline.
type Processor struct {
	ProcessorOptions
}

// NewProcessor returns a processor with o.
func NewProcessor(o ProcessorOptions) *Processor {
	return &Processor{ProcessorOptions: o}
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
	// With tracing on, the job's span joins its delivery's trace.
	ctx, span := startJobSpan(job, j)
	defer span.End()
	log := p.Logger.With("stripe_event_id", j.EventID, "event_type", j.EventType, "webhook_id", j.WebhookID,
		"job_id", job.ID, "attempt", job.Fails+1)
	// The deadline is the job's own: SIGTERM does not cut a running job short.
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	began := time.Now()
	attempt := p.Retries.attempt(job)
	outcome, _, err := p.Applier.Process(ctx, j.WebhookID, attempt)
	elapsed := time.Since(began).Seconds()
	if err != nil && errors.Is(err, store.ErrNotAttempted) && p.putBack(ctx, log, job, err, elapsed) {
		return nil
	}
	if err != nil {
		p.failed(ctx, log, job, j, attempt, err, elapsed)
		return err
	}
	noteOutcome(span, outcome)
	p.Metrics.jobSeconds.WithLabelValues(outcome.String()).Observe(elapsed)
	switch outcome {
	case store.Applied:
		p.Metrics.processed.WithLabelValues(j.EventType).Inc()
		log.InfoContext(ctx, "event processed", "handled", handler.Handles(j.EventType))
	case store.AlreadyProcessed:
		// The usual fate of a job whose event a group applied ahead of it.
		log.DebugContext(ctx, "event already processed; nothing to do")
	case store.Missing:
		log.WarnContext(ctx, "no stored event for this job (deleted by retention?); nothing to do")
	}
	return nil
}

// malformed files a job whose arguments name no event in the dead set:
// no attempt can help it, and put back or retried it would circle forever,
// failing the group of every run. It is logged and counted.
func (p *Processor) malformed(job *work.Job, err error) error {
	p.Metrics.malformed.Inc()
	log := p.Logger.With("job_id", job.ID, "error", err)
	if p.Jobs == nil {
		log.Error("malformed job: its arguments name no event")
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if kerr := p.Jobs.Kill(ctx, job, "malformed: "+err.Error()); kerr != nil {
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
func (p *Processor) putBack(ctx context.Context, log *slog.Logger, job *work.Job, err error, elapsed float64) bool {
	n := queue.Deferrals(job)
	if p.Jobs == nil {
		return false
	}
	if n >= maxDeferrals {
		log.ErrorContext(ctx, "event not attempted for too long; counted as a failed attempt", "error", err, "deferred", n)
		return false
	}
	at := time.Now().Add(deferral(n))
	// The job's deadline may have passed: filing it back has its own.
	fileCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	derr := p.Jobs.Defer(fileCtx, job, at, "not attempted: "+err.Error())
	cancel()
	if derr != nil {
		log.WarnContext(ctx, "could not put the job back; counted as a failed attempt", "error", derr)
		return false
	}
	p.Metrics.deferred.Inc()
	p.Metrics.jobSeconds.WithLabelValues("deferred").Observe(elapsed)
	noteDeferred(ctx, err, at, n+1)
	log.WarnContext(ctx, "event not attempted; its job is put back without counting an attempt", "error", err,
		"retry_at", at.UTC().Format(time.RFC3339), "deferred", n+1)
	if p.RetryDue != nil {
		p.RetryDue(at.Add(requeueLag))
	}
	return true
}

// failed counts and logs a failed attempt, which gocraft/work retries after
// the backoff or, on the last attempt, moves to the dead set.
func (p *Processor) failed(ctx context.Context, log *slog.Logger, job *work.Job, j queue.Job, attempt store.Attempt, err error, elapsed float64) {
	p.Metrics.failed.WithLabelValues(j.EventType).Inc()
	p.Metrics.jobSeconds.WithLabelValues("failed").Observe(elapsed)
	recorded := !errors.Is(err, store.ErrNotAttempted)
	noteFailed(ctx, err, attempt)
	if attempt.Final {
		log.ErrorContext(ctx, "event failed its last attempt; its job goes to the dead set", "error", err, "recorded", recorded)
		return
	}
	log.WarnContext(ctx, "event failed; retried with backoff", "error", err, "recorded", recorded,
		"retry_at", attempt.RetryAt.UTC().Format(time.RFC3339))
	if p.RetryDue != nil {
		p.RetryDue(p.Retries.retryAt(job).Add(requeueLag))
	}
}
