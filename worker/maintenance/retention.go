package maintenance

import (
	"context"
	"log/slog"
	"time"

	"stripe-webhooks/pkg/store"
)

// RetentionEvery is how often the retention task looks for old events.
const RetentionEvery = 10 * time.Minute

// Retention deletes processed events older than its keep duration, in small
// batches so that no delete holds many locks or a long transaction.
type Retention struct {
	logger *slog.Logger
	store  *store.Store
	keep   time.Duration
	batch  int
}

// NewRetention returns the retention task for keep (> 0).
func NewRetention(logger *slog.Logger, st *store.Store, keep time.Duration) *Retention {
	return &Retention{logger: logger.With("task", "retention"), store: st, keep: keep, batch: 500}
}

// Run deletes every processed event older than keep and returns how many.
func (r *Retention) Run(ctx context.Context) (int64, error) {
	before := time.Now().Add(-r.keep)
	var total int64
	for {
		n, err := r.store.DeleteProcessed(ctx, before, r.batch)
		total += n
		if err != nil {
			return total, err
		}
		if n < int64(r.batch) {
			break
		}
	}
	if total > 0 {
		r.logger.Info("deleted processed events past retention", "deleted", total, "older_than", before.UTC().Format(time.RFC3339))
	}
	return total, nil
}
