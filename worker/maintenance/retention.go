package maintenance

import (
	"context"
	"log/slog"
	"time"

	"stripe-webhooks/pkg/store"
)

// RetentionEvery is how often the retention task looks for old events.
const RetentionEvery = 10 * time.Minute

// Retention removes the events past the retention: whole days of them,
// by dropping the day's partition of webhook_events (no row-by-row delete,
// nothing left to vacuum), except those not processed yet, which move to
// the past partition and stay until they are (store.ExpireEvents).
type Retention struct {
	logger *slog.Logger
	store  *store.Store
	keep   time.Duration
}

// NewRetention returns the retention task for keep (> 0).
func NewRetention(logger *slog.Logger, st *store.Store, keep time.Duration) *Retention {
	return &Retention{logger: logger.With("task", "retention"), store: st, keep: keep}
}

// Run removes every event created before keep ago (a day's partition once
// its whole day is) and returns how many.
func (r *Retention) Run(ctx context.Context) (int64, error) {
	before := time.Now().Add(-r.keep)
	ex, err := r.store.ExpireEvents(ctx, before)
	if len(ex.Partitions) > 0 || ex.Past > 0 {
		r.logger.Info("removed events past retention", "partitions", ex.Partitions, "events", ex.Events,
			"kept_unprocessed", ex.Kept, "past_partition_deleted", ex.Past,
			"older_than", before.UTC().Format(time.RFC3339))
	}
	return ex.Events - ex.Kept + ex.Past, err
}
