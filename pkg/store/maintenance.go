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
// looks only at those events. It walks pending_events, the events not yet
// processed, by its created_at index, and reads each event's row by id.
func (s *Store) Unqueued(ctx context.Context, before time.Time, after Cursor, limit int, ids ...string) ([]EventRef, error) {
	var refs []EventRef
	q := s.db.WithContext(ctx).Table("pending_events AS p").
		Joins("JOIN webhook_events AS e ON e.id = p.id").
		Select("p.id", "e.stripe_event_id", "e.event_type", "p.created_at", "coalesce(e.traceparent, '') AS traceparent").
		Where("NOT p.dead AND NOT e.processed AND p.created_at < ?", before.UTC()).
		Where("p.next_attempt_at IS NULL OR p.next_attempt_at < ?", before.UTC())
	if len(ids) > 0 {
		q = q.Where("p.id IN ?", ids)
	}
	if after.WebhookID != "" {
		q = q.Where("(p.created_at, p.id) > (?, ?)", after.CreatedAt, after.WebhookID)
	}
	err := q.Order("p.created_at, p.id").Limit(limit).Find(&refs).Error
	if err != nil {
		return nil, fmt.Errorf("store: unqueued events: %w", err)
	}
	return refs, nil
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
