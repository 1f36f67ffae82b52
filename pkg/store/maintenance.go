package store

import (
	"context"
	"fmt"
	"time"
)

// Unqueued returns up to limit events, after cursor, that the sweeper must
// queue again: not processed, not dead, stored before before, and not
// waiting for a retry due after before (backoff stays backoff). Given ids
// (webhook_events.id, at most 65,000: each is a statement parameter), it
// looks only at those events.
func (s *Store) Unqueued(ctx context.Context, before time.Time, after Cursor, limit int, ids ...string) ([]EventRef, error) {
	var refs []EventRef
	q := s.db.WithContext(ctx).Model(&WebhookEvent{}).
		Select("id", "stripe_event_id", "event_type", "created_at").
		Where("processed = false AND dead_at IS NULL AND created_at < ?", before.UTC()).
		Where("next_attempt_at IS NULL OR next_attempt_at < ?", before.UTC())
	if len(ids) > 0 {
		q = q.Where("id IN ?", ids)
	}
	err := after.apply(q).Order("created_at, id").Limit(limit).Find(&refs).Error
	if err != nil {
		return nil, fmt.Errorf("store: unqueued events: %w", err)
	}
	return refs, nil
}

// DeleteProcessed deletes up to limit processed events stored before
// before, and returns how many. Unprocessed events are never deleted.
func (s *Store) DeleteProcessed(ctx context.Context, before time.Time, limit int) (int64, error) {
	res := s.db.WithContext(ctx).Exec(`DELETE FROM webhook_events WHERE id IN (
		SELECT id FROM webhook_events WHERE processed = true AND created_at < ? ORDER BY created_at LIMIT ?)`,
		before.UTC(), limit)
	if res.Error != nil {
		return 0, fmt.Errorf("store: delete processed events: %w", res.Error)
	}
	return res.RowsAffected, nil
}

// ClaimPeriodic claims this period's run of the task name: it answers true
// to one caller per period, however many replicas ask.
func (s *Store) ClaimPeriodic(ctx context.Context, name string, period time.Duration) (bool, error) {
	now := time.Now().UTC()
	var claimed []string
	err := s.db.WithContext(ctx).Raw(`INSERT INTO periodic_runs (name, last_run_at) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at
		WHERE periodic_runs.last_run_at <= ?
		RETURNING name`, name, now, now.Add(-period)).Scan(&claimed).Error
	if err != nil {
		return false, fmt.Errorf("store: claim %s: %w", name, err)
	}
	return len(claimed) == 1, nil
}
