package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidwall/gjson"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"stripe-webhooks/pkg/payload"
	"stripe-webhooks/pkg/telemetry"
)

// WebhookEvent is one Stripe event as delivered, stored once per event id.
type WebhookEvent struct {
	ID            string `gorm:"type:uuid;primaryKey"`
	StripeEventID string
	EventType     string
	// Payload is the delivered body, byte for byte (compressed in the
	// table; the store's reads give it back as it came).
	Payload     []byte
	Processed   bool
	ProcessedAt *time.Time
	Error       *string
	RetryCount  int
	ReceivedAt  time.Time
	CreatedAt   time.Time
	// DeadAt is set when the event's job exhausted its retries.
	DeadAt *time.Time
	// NextAttemptAt is when gocraft/work retries the failed job.
	NextAttemptAt *time.Time
	// Livemode is the event's livemode as delivered; nil for rows stored
	// before the column existed.
	Livemode *bool
	// Traceparent is the W3C traceparent of the delivery that stored the
	// event ("" if it was stored while tracing was off). Claims read it.
	Traceparent string `gorm:"-"`
	// payloadErr is why a claimed event's payload could not be read back
	// (a damaged frame, a dictionary this build does not know): the
	// event's own failure, recorded against it in place of its handler's.
	payloadErr error
}

// Status is one of the Status constants.
func (e WebhookEvent) Status() string {
	return eventStatus(e.Processed, e.DeadAt, e.Error)
}

// NewEvent is a verified delivery about to be stored.
type NewEvent struct {
	StripeEventID string
	EventType     string
	// Payload is the body as delivered.
	Payload []byte
	// Created is the event's Stripe `created`; zero: the payload's own
	// (an event without one is keyed as created at the Unix epoch, so
	// that its redeliveries have its id; its row goes to the default
	// partition).
	Created    time.Time
	ReceivedAt time.Time
	// Livemode is the event's livemode (false: a test-mode event).
	Livemode bool
	// Traceparent is the W3C traceparent of the delivery's span, stored
	// with the event so that its jobs join the delivery's trace; "" (NULL)
	// while tracing is off.
	Traceparent string
}

// key is the event's row id (EventKey).
func (e NewEvent) key() string {
	if e.Created.IsZero() {
		return EventKey(payloadCreated(e.Payload), e.StripeEventID)
	}
	return EventKey(e.Created, e.StripeEventID)
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
	// Traceparent is the one stored with the event (the first delivery's):
	// what its jobs carry.
	Traceparent string
	// AfterCommitErr is the error of the Inserter's AfterCommit hook, if any.
	AfterCommitErr error
}

// InsertEvent stores one delivery once per Stripe event id, with the same
// INSERT … ON CONFLICT (id) DO NOTHING the Inserter runs for a batch:
// atomic under concurrent duplicates. When the id exists it reads the
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
	existing, err := s.lookupRows(ctx, rows.keys)
	if err != nil {
		return Stored{}, fmt.Errorf("store: read duplicate event: %w", err)
	}
	st, ok := existing[id]
	if !ok {
		return Stored{}, fmt.Errorf("store: event %s neither inserted nor found", id)
	}
	return st, nil
}

// eventRows are deliveries to insert, as insertBatch's eight arrays.
type eventRows struct {
	keys, ids, types []string
	payloads         [][]byte
	received         []time.Time
	livemode         []bool
	accounts         []string
	traceparents     []string // "": NULL
}

func (r *eventRows) add(e NewEvent) {
	r.keys = append(r.keys, e.key())
	r.ids = append(r.ids, e.StripeEventID)
	r.types = append(r.types, e.EventType)
	r.payloads = append(r.payloads, payload.Encode(e.Payload))
	r.received = append(r.received, e.ReceivedAt.UTC())
	r.livemode = append(r.livemode, e.Livemode)
	r.accounts = append(r.accounts, EventAccount(e.Payload))
	r.traceparents = append(r.traceparents, e.Traceparent)
}

// insertBatch is one statement for any batch size, so it is prepared once.
// It stores the events new to the table, each in its partition (by its
// id), and notes each new one pending.
const insertBatch = `WITH stored AS (
	INSERT INTO webhook_events (id, stripe_event_id, event_type, payload, received_at, livemode, stripe_account_id, traceparent)
	SELECT e.key, e.id, e.type, e.payload, e.received_at, e.livemode, NULLIF(e.account, ''), e.traceparent
	FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::timestamp[], $6::boolean[], $7::text[], $8::text[])
		AS e(key, id, type, payload, received_at, livemode, account, traceparent)
	ON CONFLICT (id) DO NOTHING
	RETURNING id, stripe_event_id, created_at, traceparent
), pending AS (
	INSERT INTO pending_events (id, created_at) SELECT id, created_at FROM stored
)
SELECT id, stripe_event_id, traceparent FROM stored`

// insertBatchName names insertBatch's prepared statement on each connection
// (behind PgBouncer: session pooling, or transaction pooling with
// max_prepared_statements; see JSON).
const insertBatchName = "sw_insert_batch_v3"

// binaryParams sends each of insertBatch's parameters in binary format.
var binaryParams = [8]int16{1, 1, 1, 1, 1, 1, 1, 1}

// insertRows runs insertBatch and returns the rows it inserted, by event id.
// The parameters are encoded into params' kept buffer (nil: a new one) and
// sent with the prepared statement as they are.
func (s *Store) insertRows(ctx context.Context, params *batchParams, rows eventRows) (map[string]Stored, error) {
	if params == nil {
		params = &batchParams{}
	}
	out := make(map[string]Stored, len(rows.ids))
	// The statement goes to pgconn as it is, past pgx's tracer: its span is
	// made here.
	ctx, span := telemetry.StartChild(ctx, "INSERT webhook_events", trace.SpanKindClient)
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(semconv.DBSystemNamePostgreSQL, semconv.DBOperationName("INSERT"),
			semconv.DBCollectionName("webhook_events"), semconv.DBOperationBatchSize(len(rows.ids)),
			semconv.DBQuerySummary("INSERT webhook_events"))
	}
	err := s.withConn(ctx, func(conn *pgx.Conn) error {
		// Prepared once per connection; each batch's look-up of it in pgx's
		// cache would otherwise be a span of its own.
		sd, err := conn.Prepare(trace.ContextWithSpan(ctx, noSpan), insertBatchName, insertBatch)
		if err != nil {
			return err
		}
		rr := conn.PgConn().ExecPrepared(ctx, sd.Name, params.encode(rows), binaryParams[:], nil)
		for rr.NextRow() {
			row := rr.Values() // text format: id, stripe_event_id, traceparent (nil: NULL)
			out[string(row[1])] = Stored{WebhookID: string(row[0]), Inserted: true, Traceparent: string(row[2])}
		}
		_, err = rr.Close()
		return err
	})
	if err != nil {
		telemetry.Fail(span, err)
		return nil, err
	}
	return out, nil
}

// lookupRows reads the stored rows of the event row ids keys, by Stripe
// event id. ON CONFLICT waited for any concurrent insert of them to
// commit, so they are visible. It names the days the ids lie in, as a
// group's claim does (claimEvents), so that it is planned over their
// partitions only.
func (s *Store) lookupRows(ctx context.Context, keys []string) (map[string]Stored, error) {
	out := make(map[string]Stored, len(keys))
	lo, hi := idSpan(keys)
	err := s.withConn(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT e.id, e.stripe_event_id, e.processed, coalesce(e.traceparent, '')
			FROM webhook_events AS e WHERE e.id = ANY($1::uuid[]) AND e.id BETWEEN $2 AND $3`, keys, lo, hi)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var webhookID, eventID, traceparent string
			var processed bool
			if err := rows.Scan(&webhookID, &eventID, &processed, &traceparent); err != nil {
				return err
			}
			out[eventID] = Stored{WebhookID: webhookID, Processed: processed, Traceparent: traceparent}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EventByStripeID returns the stored event with that Stripe id, its
// payload as delivered.
func (s *Store) EventByStripeID(ctx context.Context, stripeEventID string) (WebhookEvent, error) {
	var e WebhookEvent
	if err := s.db.WithContext(ctx).Where("stripe_event_id = ?", stripeEventID).Take(&e).Error; err != nil {
		return e, err
	}
	raw, err := payload.Decode(e.Payload)
	if err != nil {
		return e, fmt.Errorf("store: event %s: %w", stripeEventID, err)
	}
	e.Payload = raw
	return e, nil
}

// CountUnprocessed counts the events not yet applied.
func (s *Store) CountUnprocessed(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Table("pending_events").Count(&n).Error
	return n, err
}

// StoredEventIDs returns which of the events (Stripe event id → its
// `created`) have a row: looked up by row id (EventKey), in its partition.
func (s *Store) StoredEventIDs(ctx context.Context, created map[string]time.Time) (map[string]bool, error) {
	stored := make(map[string]bool, len(created))
	if len(created) == 0 {
		return stored, nil
	}
	keys := make([]string, 0, len(created))
	for id, at := range created {
		keys = append(keys, EventKey(at, id))
	}
	rows, err := s.lookupRows(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("store: stored event ids: %w", err)
	}
	for id := range rows {
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
	// Traceparent is the one stored with the event ("" for none).
	Traceparent string
}

// Cursor is the event's position in created_at, id order (the sweeper's)
// and in id order (the others'): given as after, the next page starts
// behind it.
func (r EventRef) Cursor() Cursor {
	return Cursor{CreatedAt: r.CreatedAt, WebhookID: r.WebhookID}
}

// Cursor is a position for keyset pagination: in id order (an event's id
// orders it by its Stripe `created`), or in created_at, id order where a
// query says so.
type Cursor struct {
	CreatedAt time.Time
	WebhookID string
}

// ReplayFilter chooses events to replay. Exactly one of StripeEventID,
// Since and Failed is set; EventType narrows Since and Failed.
type ReplayFilter struct {
	StripeEventID string
	// Since: the events stored since then.
	Since     time.Time
	Failed    bool // exhausted their retries (dead, not processed)
	EventType string
	// Livemode, when set, leaves out the events stored with the other
	// livemode (rows stored before the column existed are kept).
	Livemode *bool
}

// ReplayBatch returns up to limit events after cursor matching f: the
// events stored since f.Since in created_at, id order (each day's
// partition's (created_at, id) index), the dead ones in id order (walking
// their pending rows).
func (s *Store) ReplayBatch(ctx context.Context, f ReplayFilter, after Cursor, limit int) ([]EventRef, error) {
	q := s.db.WithContext(ctx).Table("webhook_events AS e").Select("e.id", "e.stripe_event_id", "e.event_type", "e.created_at",
		"coalesce(e.traceparent, '') AS traceparent")
	order := "e.created_at, e.id"
	switch {
	case f.StripeEventID != "":
		q = q.Where("e.stripe_event_id = ?", f.StripeEventID)
	case f.Failed:
		q = q.Joins("JOIN pending_events AS p ON p.id = e.id").Where("p.dead AND NOT e.processed")
		order = "e.id"
	default:
		q = q.Where("e.created_at >= ?", f.Since.UTC())
	}
	if f.EventType != "" {
		q = q.Where("e.event_type = ?", f.EventType)
	}
	if f.Livemode != nil {
		q = q.Where("e.livemode IS DISTINCT FROM ?", !*f.Livemode)
	}
	switch {
	case after.WebhookID == "":
	case order == "e.id":
		q = q.Where("e.id > ?", after.WebhookID)
	default:
		q = q.Where("(e.created_at, e.id) > (?, ?)", after.CreatedAt, after.WebhookID)
	}
	var refs []EventRef
	if err := q.Order(order).Limit(limit).Find(&refs).Error; err != nil {
		return nil, fmt.Errorf("store: replay batch: %w", err)
	}
	return refs, nil
}
