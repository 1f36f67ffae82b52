package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidwall/gjson"
	"gorm.io/gorm"
)

// WebhookEvent is one Stripe event as delivered, stored once per event id.
type WebhookEvent struct {
	ID            string `gorm:"type:uuid;primaryKey;default:gen_random_uuid()"`
	StripeEventID string
	EventType     string
	Payload       JSON
	Processed     bool
	ProcessedAt   *time.Time
	Error         *string
	RetryCount    int
	ReceivedAt    time.Time
	CreatedAt     time.Time
	// DeadAt is set when the event's job exhausted its retries.
	DeadAt *time.Time
	// NextAttemptAt is when gocraft/work retries the failed job.
	NextAttemptAt *time.Time
	// Livemode is the event's livemode as delivered; nil for rows stored
	// before the column existed.
	Livemode *bool
}

// NewEvent is a verified delivery about to be stored.
type NewEvent struct {
	StripeEventID string
	EventType     string
	Payload       []byte
	ReceivedAt    time.Time
	// Livemode is the event's livemode (false: a test-mode event).
	Livemode bool
}

// EventAccount is the connected account an event was sent for: its
// payload's top-level "account" (Stripe puts it near the start), "" for the
// platform's own events. It is the store's one answer to that question: the
// inserts keep it in webhook_events.stripe_account_id (the console's
// filter), and an Applier without AccountOf locks its row.
func EventAccount(payload []byte) string {
	return gjson.GetBytes(payload, "account").Str
}

// Stored is the row a delivery maps to.
type Stored struct {
	// WebhookID is the row's uuid.
	WebhookID string
	// Inserted is false when the event id was already stored.
	Inserted bool
	// Processed tells whether the worker has applied the event.
	Processed bool
	// AfterCommitErr is the error of the Inserter's AfterCommit hook, if any.
	AfterCommitErr error
}

// InsertEvent stores one delivery once per Stripe event id, with the same
// INSERT … ON CONFLICT (stripe_event_id) DO NOTHING the Inserter runs for a
// batch: atomic under concurrent duplicates. When the id exists it reads the
// existing row instead.
func (s *Store) InsertEvent(ctx context.Context, e NewEvent) (Stored, error) {
	var rows eventRows
	rows.add(e)
	id := e.StripeEventID
	inserted, err := s.insertRows(ctx, nil, rows)
	if err != nil {
		return Stored{}, fmt.Errorf("store: insert event: %w", err)
	}
	if st, ok := inserted[id]; ok {
		return st, nil
	}
	existing, err := s.lookupRows(ctx, []string{id})
	if err != nil {
		return Stored{}, fmt.Errorf("store: read duplicate event: %w", err)
	}
	st, ok := existing[id]
	if !ok {
		return Stored{}, fmt.Errorf("store: event %s neither inserted nor found", id)
	}
	return st, nil
}

// eventRows are deliveries to insert, as insertBatch's six arrays.
type eventRows struct {
	ids, types []string
	payloads   [][]byte
	received   []time.Time
	livemode   []bool
	accounts   []string
}

func (r *eventRows) add(e NewEvent) {
	r.ids = append(r.ids, e.StripeEventID)
	r.types = append(r.types, e.EventType)
	r.payloads = append(r.payloads, e.Payload)
	r.received = append(r.received, e.ReceivedAt.UTC())
	r.livemode = append(r.livemode, e.Livemode)
	r.accounts = append(r.accounts, EventAccount(e.Payload))
}

// insertBatch is one statement for any batch size, so it is prepared once.
const insertBatch = `INSERT INTO webhook_events (stripe_event_id, event_type, payload, received_at, livemode, stripe_account_id)
SELECT e.id, e.type, e.payload::jsonb, e.received_at, e.livemode, NULLIF(e.account, '')
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamp[], $5::boolean[], $6::text[])
	AS e(id, type, payload, received_at, livemode, account)
ON CONFLICT (stripe_event_id) DO NOTHING
RETURNING id, stripe_event_id`

// insertBatchName names insertBatch's prepared statement on each connection
// (behind PgBouncer: session pooling, or transaction pooling with
// max_prepared_statements; see JSON).
const insertBatchName = "sw_insert_batch"

// binaryParams sends each of insertBatch's parameters in binary format.
var binaryParams = [6]int16{1, 1, 1, 1, 1, 1}

// insertRows runs insertBatch and returns the rows it inserted, by event id.
// The parameters are encoded into params' kept buffer (nil: a new one) and
// sent with the prepared statement as they are.
func (s *Store) insertRows(ctx context.Context, params *batchParams, rows eventRows) (map[string]Stored, error) {
	if params == nil {
		params = &batchParams{}
	}
	out := make(map[string]Stored, len(rows.ids))
	err := s.withConn(ctx, func(conn *pgx.Conn) error {
		sd, err := conn.Prepare(ctx, insertBatchName, insertBatch)
		if err != nil {
			return err
		}
		rr := conn.PgConn().ExecPrepared(ctx, sd.Name, params.encode(rows), binaryParams[:], nil)
		for rr.NextRow() {
			row := rr.Values() // text format: id, stripe_event_id
			out[string(row[1])] = Stored{WebhookID: string(row[0]), Inserted: true}
		}
		_, err = rr.Close()
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lookupRows reads the rows of event ids that were already stored. ON
// CONFLICT waited for any concurrent insert of them to commit, so they are
// visible.
func (s *Store) lookupRows(ctx context.Context, ids []string) (map[string]Stored, error) {
	out := make(map[string]Stored, len(ids))
	err := s.withConn(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT id, stripe_event_id, processed FROM webhook_events WHERE stripe_event_id = ANY($1::text[])`, ids)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var webhookID, eventID string
			var processed bool
			if err := rows.Scan(&webhookID, &eventID, &processed); err != nil {
				return err
			}
			out[eventID] = Stored{WebhookID: webhookID, Processed: processed}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EventByStripeID returns the stored event with that Stripe id.
func (s *Store) EventByStripeID(ctx context.Context, stripeEventID string) (WebhookEvent, error) {
	var e WebhookEvent
	err := s.db.WithContext(ctx).Where("stripe_event_id = ?", stripeEventID).Take(&e).Error
	return e, err
}

// CountUnprocessed counts the events not yet applied.
func (s *Store) CountUnprocessed(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&WebhookEvent{}).Where("processed = false").Count(&n).Error
	return n, err
}

// StoredEventIDs returns which of the Stripe event ids have a row.
func (s *Store) StoredEventIDs(ctx context.Context, ids []string) (map[string]bool, error) {
	stored := make(map[string]bool, len(ids))
	if len(ids) == 0 {
		return stored, nil
	}
	var found []string
	err := s.db.WithContext(ctx).Model(&WebhookEvent{}).Where("stripe_event_id IN ?", ids).
		Pluck("stripe_event_id", &found).Error
	if err != nil {
		return nil, fmt.Errorf("store: stored event ids: %w", err)
	}
	for _, id := range found {
		stored[id] = true
	}
	return stored, nil
}

// EventRef points at a stored event: what a job carries.
type EventRef struct {
	WebhookID     string `gorm:"column:id"`
	StripeEventID string
	EventType     string
	CreatedAt     time.Time
}

// Cursor is the event's position in created_at, id order: given as after,
// the next page starts behind it.
func (r EventRef) Cursor() Cursor {
	return Cursor{CreatedAt: r.CreatedAt, WebhookID: r.WebhookID}
}

// Cursor is a position in created_at, id order, for keyset pagination.
type Cursor struct {
	CreatedAt time.Time
	WebhookID string
}

// apply narrows q to the events after c (all of them for the zero Cursor).
func (c Cursor) apply(q *gorm.DB) *gorm.DB {
	if c.WebhookID == "" {
		return q
	}
	return q.Where("(created_at, id) > (?, ?)", c.CreatedAt, c.WebhookID)
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
