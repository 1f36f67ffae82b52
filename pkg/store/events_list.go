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
	return Cursor{WebhookID: e.ID}
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

// ListEvents returns up to limit events matching f, newest first (by id:
// the order of their Stripe `created`), strictly before cursor before (none
// when its WebhookID is empty). Each filter and the order are served by an
// index of each day's partition, walked newest partition first, so a page
// reads about limit rows whatever the number of partitions, and a deep page
// costs what the first does. The waiting, failing and dead lists walk
// pending_events, the events not yet processed, by its primary key.
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
	q, order, err := statusQuery(db, f.Status)
	if err != nil {
		return nil, err
	}
	q = q.Select("e.id", "e.stripe_event_id", "e.event_type", "coalesce(e.stripe_account_id, '') AS account", "e.processed",
		"e.error", "e.retry_count", "e.dead_at", "e.next_attempt_at", "e.received_at", "e.processed_at", "e.created_at")
	if f.EventType != "" {
		q = q.Where("e.event_type = ?", f.EventType)
	}
	if f.Account != "" {
		q = q.Where("e.stripe_account_id = ?", f.Account)
	}
	if f.StripeEventID != "" {
		q = q.Where("e.stripe_event_id = ?", f.StripeEventID)
	}
	if !f.From.IsZero() {
		q = q.Where(order+" >= ?", idFloor(f.From))
	}
	if !f.To.IsZero() {
		q = q.Where(order+" < ?", idFloor(f.To))
	}
	if before.WebhookID != "" {
		q = q.Where(order+" < ?", before.WebhookID)
	}
	return q.Order(order + " DESC").Limit(limit), nil
}

// statusQuery is the rows of status on db, and the column they are in
// order of: the events table for all events and the processed ones,
// pending_events joined to it for the others.
func statusQuery(db *gorm.DB, status string) (*gorm.DB, string, error) {
	db = db.Session(&gorm.Session{}) // each query below starts from db as it is
	pending := func(where string) *gorm.DB {
		return db.Table("pending_events AS p").Joins("JOIN webhook_events AS e ON e.id = p.id").
			Where("NOT e.processed AND " + where)
	}
	switch status {
	case "":
		return db.Table("webhook_events AS e"), "e.id", nil
	case StatusProcessed:
		return db.Table("webhook_events AS e").Where("e.processed"), "e.id", nil
	case StatusDead:
		return pending("p.dead"), "p.id", nil
	case StatusFailing:
		return pending("p.failed AND NOT p.dead"), "p.id", nil
	case StatusWaiting:
		return pending("NOT p.failed AND NOT p.dead"), "p.id", nil
	}
	return nil, "", fmt.Errorf("%w %q", ErrUnknownStatus, status)
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
// since. The counts of unprocessed events and the oldest pending event read
// pending_events; the processed count is every row less those (an
// index-only count of each partition); the per-minute counts read only the
// events Stripe created since since (by id, the partitions of those days):
// an event created earlier and stored since (a redelivery after an outage,
// a reconciled one) is not in them.
func (s *Store) Overview(ctx context.Context, since time.Time) (Overview, error) {
	var o Overview
	db := s.db.WithContext(ctx)
	since = since.UTC()
	if err := db.Raw(`SELECT
			count(*) FILTER (WHERE NOT failed AND NOT dead) AS waiting,
			count(*) FILTER (WHERE failed AND NOT dead) AS failing,
			count(*) FILTER (WHERE dead) AS dead,
			min(created_at) FILTER (WHERE NOT dead) AS oldest
		FROM pending_events`).Row().Scan(&o.Counts.Waiting, &o.Counts.Failing, &o.Counts.Dead, &o.OldestPending); err != nil {
		return o, fmt.Errorf("store: overview counts: %w", err)
	}
	var all int64
	if err := db.Raw(`SELECT count(*) FROM webhook_events`).Row().Scan(&all); err != nil {
		return o, fmt.Errorf("store: overview processed count: %w", err)
	}
	o.Counts.Processed = max(all-o.Counts.Waiting-o.Counts.Failing-o.Counts.Dead, 0)
	if err := db.Raw(`SELECT name, last_run_at FROM periodic_runs ORDER BY name`).Scan(&o.Runs).Error; err != nil {
		return o, fmt.Errorf("store: periodic runs: %w", err)
	}
	if err := db.Raw(`SELECT date_trunc('minute', created_at) AS minute, count(*) AS count
		FROM webhook_events WHERE id >= ? AND created_at >= ? GROUP BY 1 ORDER BY 1`, idFloor(since), since).
		Scan(&o.Deliveries).Error; err != nil {
		return o, fmt.Errorf("store: deliveries per minute: %w", err)
	}
	if err := db.Raw(`SELECT date_trunc('minute', processed_at) AS minute, count(*) AS count
		FROM webhook_events WHERE id >= ? AND processed_at >= ? GROUP BY 1 ORDER BY 1`, idFloor(since), since).
		Scan(&o.Applications).Error; err != nil {
		return o, fmt.Errorf("store: applications per minute: %w", err)
	}
	if err := db.Raw(`SELECT now() AT TIME ZONE 'UTC'`).Row().Scan(&o.Now); err != nil {
		return o, fmt.Errorf("store: now: %w", err)
	}
	return o, nil
}
