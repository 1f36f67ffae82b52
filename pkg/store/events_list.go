package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// Event statuses, as the web UI's console filters and shows them.
const (
	StatusWaiting   = "waiting"   // not processed, no failed attempt yet
	StatusFailing   = "failing"   // failed, waiting for a retry
	StatusDead      = "dead"      // exhausted its retries
	StatusProcessed = "processed" // applied
)

// EventFilter narrows ListEvents; zero fields do not filter.
type EventFilter struct {
	Status        string // one of the Status constants
	EventType     string
	Account       string // the payload's top-level "account" (acct_…)
	StripeEventID string
	From          time.Time // created_at at or after
	To            time.Time // created_at before
}

// EventSummary is one row of the console's event list.
type EventSummary struct {
	ID            string
	StripeEventID string
	EventType     string
	Account       string
	Processed     bool
	Error         *string
	RetryCount    int
	DeadAt        *time.Time
	NextAttemptAt *time.Time
	ReceivedAt    time.Time
	ProcessedAt   *time.Time
	CreatedAt     time.Time
}

// Status is one of the Status constants.
func (e EventSummary) Status() string {
	return eventStatus(e.Processed, e.DeadAt, e.Error)
}

// Cursor is the position after this row, newest first.
func (e EventSummary) Cursor() Cursor {
	return Cursor{CreatedAt: e.CreatedAt, WebhookID: e.ID}
}

func eventStatus(processed bool, deadAt *time.Time, errMsg *string) string {
	switch {
	case processed:
		return StatusProcessed
	case deadAt != nil:
		return StatusDead
	case errMsg != nil:
		return StatusFailing
	default:
		return StatusWaiting
	}
}

// ErrUnknownStatus is returned by ListEvents for a status it does not know.
var ErrUnknownStatus = errors.New("store: unknown event status")

// ListEvents returns up to limit events matching f, newest first (by
// created_at, then id), strictly before cursor before (none when its
// WebhookID is empty). Each filter and the order are served by an index
// (migrations 00001 and 00008), so a deep page costs what the first does.
func (s *Store) ListEvents(ctx context.Context, f EventFilter, before Cursor, limit int) ([]EventSummary, error) {
	q, err := listEventsQuery(s.db.WithContext(ctx), f, before, limit)
	if err != nil {
		return nil, err
	}
	var rows []EventSummary
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list events: %w", err)
	}
	return rows, nil
}

// listEventsQuery is ListEvents' query on db, ready to Find.
func listEventsQuery(db *gorm.DB, f EventFilter, before Cursor, limit int) (*gorm.DB, error) {
	q := db.Model(&WebhookEvent{}).Select(
		"id", "stripe_event_id", "event_type", "coalesce(stripe_account_id, payload->>'account') AS account", "processed", "error",
		"retry_count", "dead_at", "next_attempt_at", "received_at", "processed_at", "created_at")
	switch f.Status {
	case "":
	case StatusProcessed:
		q = q.Where("processed = true")
	case StatusDead:
		q = q.Where("processed = false AND dead_at IS NOT NULL")
	case StatusFailing:
		q = q.Where("processed = false AND dead_at IS NULL AND error IS NOT NULL")
	case StatusWaiting:
		q = q.Where("processed = false AND dead_at IS NULL AND error IS NULL")
	default:
		return nil, fmt.Errorf("%w %q", ErrUnknownStatus, f.Status)
	}
	if f.EventType != "" {
		q = q.Where("event_type = ?", f.EventType)
	}
	if f.Account != "" {
		q = q.Where("stripe_account_id = ?", f.Account)
	}
	if f.StripeEventID != "" {
		q = q.Where("stripe_event_id = ?", f.StripeEventID)
	}
	if !f.From.IsZero() {
		q = q.Where("created_at >= ?", f.From.UTC())
	}
	if !f.To.IsZero() {
		q = q.Where("created_at < ?", f.To.UTC())
	}
	if before.WebhookID != "" {
		q = q.Where("(created_at, id) < (?, ?)", before.CreatedAt.UTC(), before.WebhookID)
	}
	return q.Order("created_at DESC, id DESC").Limit(limit), nil
}

// EventDetail is one stored event with its status.
type EventDetail struct {
	WebhookEvent
	Status string
}

// EventDetail returns the event stripeEventID; IsNotFound tells a missing one.
func (s *Store) EventDetail(ctx context.Context, stripeEventID string) (EventDetail, error) {
	e, err := s.EventByStripeID(ctx, stripeEventID)
	if err != nil {
		return EventDetail{}, err
	}
	return EventDetail{WebhookEvent: e, Status: eventStatus(e.Processed, e.DeadAt, e.Error)}, nil
}

// StatusCounts is the number of events in each status.
type StatusCounts struct {
	Waiting, Failing, Dead, Processed int64
}

// PeriodicRun is when a periodic task last ran.
type PeriodicRun struct {
	Name      string
	LastRunAt time.Time
}

// MinuteCount is the number of events in one minute.
type MinuteCount struct {
	Minute time.Time
	Count  int64
}

// Overview is the state of the pipeline, for the console's overview page.
type Overview struct {
	Counts StatusCounts
	// OldestPending is the created_at of the oldest event neither processed
	// nor dead; nil when there is none.
	OldestPending *time.Time
	// Runs are the periodic tasks' last runs, by name.
	Runs []PeriodicRun
	// Deliveries counts events by the minute they were stored, and
	// Applications by the minute they were processed, from since on.
	Deliveries, Applications []MinuteCount
	Now                      time.Time
}

// Overview reads the counts per status, the oldest pending event, the
// periodic runs, and the events stored and processed per minute since
// since. The unprocessed counts and the oldest pending event are served by
// the (processed, created_at) index, the processed count by an index-only
// scan of it; the per-minute counts read only rows created since
// since minus an hour, by the (created_at, id) index (processed_at has no
// index, and an event is processed soon after it is stored).
func (s *Store) Overview(ctx context.Context, since time.Time) (Overview, error) {
	var o Overview
	db := s.db.WithContext(ctx)
	since = since.UTC()
	if err := db.Raw(`SELECT
			count(*) FILTER (WHERE dead_at IS NULL AND error IS NULL) AS waiting,
			count(*) FILTER (WHERE dead_at IS NULL AND error IS NOT NULL) AS failing,
			count(*) FILTER (WHERE dead_at IS NOT NULL) AS dead,
			min(created_at) FILTER (WHERE dead_at IS NULL) AS oldest
		FROM webhook_events WHERE processed = false`).Row().Scan(&o.Counts.Waiting, &o.Counts.Failing, &o.Counts.Dead, &o.OldestPending); err != nil {
		return o, fmt.Errorf("store: overview counts: %w", err)
	}
	if err := db.Raw(`SELECT count(*) FROM webhook_events WHERE processed = true`).Row().Scan(&o.Counts.Processed); err != nil {
		return o, fmt.Errorf("store: overview processed count: %w", err)
	}
	if err := db.Raw(`SELECT name, last_run_at FROM periodic_runs ORDER BY name`).Scan(&o.Runs).Error; err != nil {
		return o, fmt.Errorf("store: periodic runs: %w", err)
	}
	if err := db.Raw(`SELECT date_trunc('minute', created_at) AS minute, count(*) AS count
		FROM webhook_events WHERE created_at >= ? GROUP BY 1 ORDER BY 1`, since).Scan(&o.Deliveries).Error; err != nil {
		return o, fmt.Errorf("store: deliveries per minute: %w", err)
	}
	if err := db.Raw(`SELECT date_trunc('minute', processed_at) AS minute, count(*) AS count
		FROM webhook_events WHERE created_at >= ? AND processed_at >= ? GROUP BY 1 ORDER BY 1`,
		since.Add(-time.Hour), since).Scan(&o.Applications).Error; err != nil {
		return o, fmt.Errorf("store: applications per minute: %w", err)
	}
	if err := db.Raw(`SELECT now() AT TIME ZONE 'UTC'`).Row().Scan(&o.Now); err != nil {
		return o, fmt.Errorf("store: now: %w", err)
	}
	return o, nil
}
