package maintenance

import (
	"context"
	"log/slog"
	"time"

	"stripe-webhooks/pkg/store"
)

// PartitionsEvery is how often the partitions task checks the days ahead.
const PartitionsEvery = time.Hour

// partitionsAhead is how far ahead the partitions task keeps days'
// partitions.
const partitionsAhead = 7 * 24 * time.Hour

// Partitions makes webhook_events' partitions of the days ahead
// (store.EnsurePartitions), so that every event Stripe creates from today
// on has its day's partition waiting. An event of a day without one is
// kept all the same, in the future partition, which gives its rows to
// their day's partition when it is made.
type Partitions struct {
	logger *slog.Logger
	store  *store.Store
}

// NewPartitions returns the partitions task.
func NewPartitions(logger *slog.Logger, st *store.Store) *Partitions {
	return &Partitions{logger: logger.With("task", "partitions"), store: st}
}

// Run makes the partitions of the days from today to a week ahead that
// have none (one a day, once the first week is made), and returns how many
// it made.
func (p *Partitions) Run(ctx context.Context) (int, error) {
	now := time.Now()
	made, err := p.store.EnsurePartitions(ctx, now, now.Add(partitionsAhead))
	if made > 0 {
		p.logger.Info("made partitions of webhook_events", "days", made,
			"through", now.Add(partitionsAhead).UTC().Format(time.DateOnly))
	}
	return made, err
}
