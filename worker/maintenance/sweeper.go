package maintenance

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/telemetry"
)

// Sweeper queues again the events that Postgres holds but Redis lost track
// of: stored while Redis was down, jobs lost with Redis, jobs of a killed
// worker. It looks in Redis in bulk which events still have a job, and
// queues only the others, so a backlog of events still queued costs one
// round trip to Redis per page of them. It reads the events in pages, so a
// large backlog never sits in memory at once.
type Sweeper struct {
	logger   *slog.Logger
	store    *store.Store
	enqueuer *queue.Enqueuer
	metrics  *Metrics
	// after is how old an unprocessed event must be before it is queued again.
	after time.Duration
	// page is how many events one query reads and one MGET looks up;
	// maxPerSweep bounds one sweep.
	page, maxPerSweep int
}

// NewSweeper returns a sweeper for events older than after.
func NewSweeper(logger *slog.Logger, st *store.Store, enq *queue.Enqueuer, m *Metrics, after time.Duration) *Sweeper {
	return &Sweeper{logger: logger.With("task", "sweeper"), store: st, enqueuer: enq, metrics: m, after: after,
		page: 25_000, maxPerSweep: 100_000}
}

// Sweep queues again every event that needs it and returns how many new
// jobs it added. An event needs it when it is unprocessed, older than
// after, not dead, not waiting for a retry due later, and has no job
// waiting, in progress or waiting for a retry in Redis. One sweep reads at
// most maxPerSweep events.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	before := time.Now().Add(-s.after)
	cursor := store.Cursor{}
	read, lost, queued := 0, 0, 0
	for read < s.maxPerSweep {
		refs, err := s.store.Unqueued(ctx, before, cursor, min(s.page, s.maxPerSweep-read))
		if err != nil {
			return queued, err
		}
		read += len(refs)
		l, q, err := s.requeueLost(ctx, before, refs)
		lost, queued = lost+l, queued+q
		if err != nil {
			return queued, err
		}
		if len(refs) < s.page {
			break
		}
		cursor = refs[len(refs)-1].Cursor()
	}
	s.metrics.sweeps.Inc()
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.Int("stripe_webhooks.sweep.checked", read), attribute.Int("stripe_webhooks.sweep.lost", lost),
			attribute.Int("stripe_webhooks.sweep.queued", queued))
	}
	if lost > 0 {
		s.logger.InfoContext(ctx, "sweeper queued lost events again", "checked", read, "lost", lost, "queued", queued)
	}
	return queued, nil
}

// requeueLost queues again those of refs whose job Redis has lost, and
// returns how many it found lost and how many jobs it added. gocraft/work
// merges a job with a copy the ingest queued meanwhile; those are lost but
// not added. A job waiting without its unique key (requeued from the retry
// set or a dead pool) looks lost too, and gets a second copy: harmless, as
// the copy that runs second finds its event processed.
func (s *Sweeper) requeueLost(ctx context.Context, before time.Time, refs []store.EventRef) (lost, added int, err error) {
	if len(refs) == 0 {
		return 0, 0, nil
	}
	pending, err := s.enqueuer.Pending(ctx, jobsOf(refs))
	if err != nil {
		s.metrics.sweeperErrors.Inc()
		return 0, 0, err
	}
	var missing []string
	for i, p := range pending {
		if !p {
			missing = append(missing, refs[i].WebhookID)
		}
	}
	if len(missing) == 0 {
		return 0, 0, nil
	}
	// A job that ran between the page's read and the look in Redis left no
	// trace there, but left its event processed, dead or waiting for a retry
	// due later: read those events again, and queue only those still
	// needing a job.
	refs, err = s.store.Unqueued(ctx, before, store.Cursor{}, len(missing), missing...)
	if err != nil || len(refs) == 0 {
		return 0, 0, err
	}
	s.metrics.sweeperLost.Add(float64(len(refs)))
	linkDeliveries(ctx, refs)
	ok, err := s.enqueuer.EnqueueMany(ctx, jobsOf(refs)) // one round trip
	for _, a := range ok {
		if a {
			added++
		}
	}
	s.metrics.sweeperQueued.Add(float64(added))
	if err != nil {
		s.metrics.sweeperErrors.Inc()
	}
	return len(refs), added, err
}

// jobsOf is the process-webhook job of each event, with the traceparent
// stored with it: the job's span joins the trace of the delivery that
// stored the event, however much later it is queued.
func jobsOf(refs []store.EventRef) []queue.Job {
	jobs := make([]queue.Job, len(refs))
	for i, r := range refs {
		jobs[i] = queue.Job{WebhookID: r.WebhookID, EventID: r.StripeEventID, EventType: r.EventType, Traceparent: r.Traceparent}
	}
	return jobs
}

// maxSweepLinks bounds the links of one sweep's span to the deliveries of
// the events it queues again (the SDK keeps 128 by default).
const maxSweepLinks = 128

// linkDeliveries links the sweep's span, if it records, to the traces of
// the deliveries that stored refs.
func linkDeliveries(ctx context.Context, refs []store.EventRef) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	for _, r := range refs[:min(len(refs), maxSweepLinks)] {
		telemetry.LinkTraceparent(span, r.Traceparent)
	}
}
