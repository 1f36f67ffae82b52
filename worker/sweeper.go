package main

import (
	"context"
	"log/slog"
	"time"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
)

// Sweeper queues again the events that Postgres holds but Redis lost track
// of: stored while Redis was down, jobs lost with Redis, jobs of a killed
// worker. It reads them in bounded batches, so a large backlog never sits in
// memory at once.
type Sweeper struct {
	logger   *slog.Logger
	store    *store.Store
	enqueuer *queue.Enqueuer
	metrics  *metrics
	// after is how old an unprocessed event must be before it is queued again.
	after time.Duration
	// batch is how many events one query reads; maxPerSweep bounds one sweep.
	batch, maxPerSweep int
}

// NewSweeper returns a sweeper for events older than after.
func NewSweeper(logger *slog.Logger, st *store.Store, enq *queue.Enqueuer, m *metrics, after time.Duration) *Sweeper {
	return &Sweeper{logger: logger.With("task", "sweeper"), store: st, enqueuer: enq, metrics: m, after: after,
		batch: 1000, maxPerSweep: 100_000}
}

// Sweep queues every event that needs it and returns how many new jobs it
// added; gocraft/work merges a job with a copy still waiting, and those are
// not counted. One sweep reads at most maxPerSweep events.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	before := time.Now().Add(-s.after)
	cursor := store.Cursor{}
	queued, read := 0, 0
	for read < s.maxPerSweep {
		refs, err := s.store.Unqueued(ctx, before, cursor, s.batch)
		if err != nil {
			return queued, err
		}
		read += len(refs)
		jobs := make([]queue.Job, len(refs))
		for i, r := range refs {
			jobs[i] = queue.Job{WebhookID: r.WebhookID, EventID: r.StripeEventID, EventType: r.EventType}
		}
		added, err := s.enqueuer.EnqueueMany(ctx, jobs) // one round trip per batch
		if err != nil {
			s.metrics.sweeperErrors.Inc()
			return queued, err
		}
		for _, a := range added {
			if a {
				queued++
				s.metrics.sweeperQueued.Inc()
			}
		}
		if len(refs) < s.batch {
			break
		}
		cursor = store.Next(refs)
	}
	s.metrics.sweeps.Inc()
	if queued > 0 {
		s.logger.Info("sweeper queued events again", "queued", queued)
	}
	return queued, nil
}
