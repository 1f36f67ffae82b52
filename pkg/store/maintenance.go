package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// EventRef points at a stored event: what a job carries.
type EventRef struct {
	WebhookID     string `gorm:"column:id"`
	StripeEventID string
	EventType     string
	CreatedAt     time.Time
}

// Cursor is a position in created_at, id order, for keyset pagination.
type Cursor struct {
	CreatedAt time.Time
	WebhookID string
}

// Next is the cursor after the last of refs.
func Next(refs []EventRef) Cursor {
	last := refs[len(refs)-1]
	return Cursor{CreatedAt: last.CreatedAt, WebhookID: last.WebhookID}
}

func (c Cursor) apply(db *gorm.DB) *gorm.DB {
	if c.WebhookID == "" {
		return db
	}
	return db.Where("(created_at, id) > (?, ?)", c.CreatedAt, c.WebhookID)
}

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

// ReplayFilter chooses events to replay. Exactly one of StripeEventID,
// Since and Failed is set; EventType narrows Since and Failed.
type ReplayFilter struct {
	StripeEventID string
	Since         time.Time
	Failed        bool // exhausted their retries (dead, not processed)
	EventType     string
	// Livemode, when set, leaves out the events stored with the other
	// livemode (rows stored before the column existed are kept).
	Livemode *bool
}

// ReplayBatch returns up to limit events after cursor matching f.
func (s *Store) ReplayBatch(ctx context.Context, f ReplayFilter, after Cursor, limit int) ([]EventRef, error) {
	q := s.db.WithContext(ctx).Model(&WebhookEvent{}).Select("id", "stripe_event_id", "event_type", "created_at")
	switch {
	case f.StripeEventID != "":
		q = q.Where("stripe_event_id = ?", f.StripeEventID)
	case f.Failed:
		q = q.Where("processed = false AND dead_at IS NOT NULL")
	default:
		q = q.Where("created_at >= ?", f.Since.UTC())
	}
	if f.EventType != "" {
		q = q.Where("event_type = ?", f.EventType)
	}
	if f.Livemode != nil {
		q = q.Where("livemode IS DISTINCT FROM ?", !*f.Livemode)
	}
	var refs []EventRef
	if err := after.apply(q).Order("created_at, id").Limit(limit).Find(&refs).Error; err != nil {
		return nil, fmt.Errorf("store: replay batch: %w", err)
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
