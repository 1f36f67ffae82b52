package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/trace"

	"stripe-webhooks/pkg/payload"
	"stripe-webhooks/pkg/telemetry"
)

// Outcome is what ProcessEvent did with an event.
type Outcome int

// The outcomes of ProcessEvent.
const (
	// Applied: the handler ran and the event is now marked processed.
	Applied Outcome = iota + 1
	// AlreadyProcessed: an earlier job applied it; nothing was done.
	AlreadyProcessed
	// Missing: no row has that id (deleted by retention, or never stored here).
	Missing
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case AlreadyProcessed:
		return "already_processed"
	case Missing:
		return "missing"
	}
	return "unknown"
}

// Attempt says what follows if this attempt fails.
type Attempt struct {
	// Final: a failure sends the job to the dead set (dead_at is set).
	Final bool
	// RetryAt: otherwise, when the job runs again (next_attempt_at).
	RetryAt time.Time
}

// ProcessEvent applies the event with row id webhookID exactly once in
// effect: in one transaction it locks the row, skips it if already
// processed, runs apply, marks it processed and commits. Two calls for the
// same event at once serialise on the row lock; the second finds it
// processed. When apply or the commit fails (ctx's deadline included), the
// transaction is rolled back and the failure is recorded (error set,
// retry_count incremented) before the error is returned. A failure before
// apply ran (ctx already done, no connection, the row's lock or read) is
// not the event's: it is returned wrapping ErrNotAttempted, and nothing is
// recorded.
//
// It speaks to Postgres through pgx on one of the pool's connections, in
// three round trips for a typical event: BEGIN with the row's claim (lock
// and processed mark in one UPDATE … RETURNING); the handler's locking
// read; the handler's writes and COMMIT. The worker opens its store with
// AsyncCommit: applying is idempotent and the event row is the record, so
// should Postgres crash before a commit reaches disk, the handler's writes
// and the processed mark are lost together, the event reads unprocessed,
// and the sweeper queues it again.
func (s *Store) ProcessEvent(ctx context.Context, webhookID string, attempt Attempt, apply ApplyFunc) (Outcome, WebhookEvent, error) {
	return s.processEvent(ctx, webhookID, attempt, apply, false)
}

// ReplayEvent applies the event again even if it was processed (the
// handlers' own created-time guards still keep newer state), under the same
// row lock as ProcessEvent, so it is safe while workers run.
func (s *Store) ReplayEvent(ctx context.Context, webhookID string, apply ApplyFunc) (Outcome, WebhookEvent, error) {
	return s.processEvent(ctx, webhookID, Attempt{Final: true}, apply, true)
}

func (s *Store) processEvent(ctx context.Context, webhookID string, attempt Attempt, apply ApplyFunc, replay bool) (Outcome, WebhookEvent, error) {
	var (
		outcome Outcome
		event   WebhookEvent
	)
	err := s.withConn(ctx, func(conn *pgx.Conn) error {
		var err error
		outcome, event, err = runEvent(ctx, conn, webhookID, apply, replay)
		return err
	})
	if err == nil {
		return outcome, event, nil
	}
	var ae *applyError
	if !errors.As(err, &ae) {
		return 0, event, &notAttempted{err: err}
	}
	// Record the failure outside the rolled-back transaction, even when
	// ctx's deadline is what failed it: the handler ran, on this event alone.
	err = ae.err
	recordCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if recErr := s.RecordFailure(recordCtx, webhookID, err, attempt); recErr != nil {
		return 0, event, fmt.Errorf("%w (and recording the failure failed: %v)", err, recErr)
	}
	return 0, event, err
}

// runEvent is ProcessEvent's transaction on conn.
func runEvent(ctx context.Context, conn *pgx.Conn, webhookID string, apply ApplyFunc, replay bool) (Outcome, WebhookEvent, error) {
	now := time.Now().UTC()
	var (
		e       WebhookEvent
		claimed bool
	)
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(unpendEvent, webhookID)
	b.Queue(claimEvent, webhookID, now, replay).Query(scanClaimed(now, func(c WebhookEvent) {
		c.ID = webhookID // as the caller names it
		e, claimed = c, true
	}))
	claimCtx, span := startStep(ctx, "store.claim")
	err := conn.SendBatch(claimCtx, b).Close()
	telemetry.Fail(span, err)
	span.End()
	if err != nil {
		return 0, WebhookEvent{ID: webhookID}, fmt.Errorf("store: lock event: %w", err)
	}
	if !claimed {
		// Already processed, or no such row: tell which.
		_, found, err := readProcessed(ctx, conn, webhookID)
		switch {
		case err != nil:
			return 0, WebhookEvent{ID: webhookID}, fmt.Errorf("store: read event: %w", err)
		case !found:
			return Missing, WebhookEvent{ID: webhookID}, nil
		}
		return AlreadyProcessed, WebhookEvent{ID: webhookID, Processed: true}, nil
	}
	telemetry.LinkTraceparent(trace.SpanFromContext(ctx), e.Traceparent)
	tx := newTx(conn)
	applyCtx, span := startApply(ctx, e)
	err = safeApply(applyCtx, tx, e, apply)
	telemetry.Fail(span, err)
	span.End()
	if err != nil {
		return 0, e, &applyError{err: err}
	}
	if err := tx.commitTraced(ctx); err != nil {
		return 0, e, &applyError{err: fmt.Errorf("store: apply and commit: %w", err)}
	}
	return Applied, e, nil
}

// claimWhere is the statement that claims the events where picks (from
// the rows of from, if any), as of $2: it locks their rows and marks them
// processed in one UPDATE, and returns claimColumns of each, for
// scanClaimed. A failure rolls the mark back with everything else the
// transaction did.
func claimWhere(from, where string) string {
	return `UPDATE webhook_events AS e SET processed = true, processed_at = $2, error = NULL, dead_at = NULL, next_attempt_at = NULL
` + from + ` WHERE ` + where + `
RETURNING ` + claimColumns
}

// claimColumns are what a claim returns of each event.
const claimColumns = `e.id, e.stripe_event_id, e.event_type, e.payload, e.retry_count, e.received_at, e.created_at,
	coalesce(e.traceparent, '')`

// unpendEvent and unpendEvents remove the pending rows of the events about
// to be claimed, in the claim's transaction (a failure puts them back), and
// before the claim: every path takes pending_events' row lock before
// webhook_events', so two transactions never wait on each other in a
// cycle. A pending row whose event is processed already is removed too.
const (
	unpendEvent  = `DELETE FROM pending_events WHERE id = $1`
	unpendEvents = `DELETE FROM pending_events WHERE id = ANY($1::uuid[])`
)

// The claims: ProcessEvent's of one event ($1), also when processed if
// replaying ($3); and a group's of many events ($1): its jobs', and those
// its look ahead took (lookAheadTake). Each waits for a row another
// transaction holds, and none returns a row already processed unless
// replaying. A group's claim names the days its ids lie in ($3 to $4,
// idSpan): Postgres then plans, and reads, only the partitions of those
// days (a plan over every partition costs every group more as partitions
// are added: 0.7 ms of Postgres's CPU with 10, 4.4 ms with 65). Within
// them the ids are an index condition (id = ANY($1)) rather than a join:
// a join of many ids to a partition whose statistics lag behind its rows
// (today's, early in a burst) is planned as a scan of the whole day.
var (
	claimEvent  = claimWhere("", `e.id = $1 AND (NOT e.processed OR $3)`)
	claimEvents = claimWhere("", `e.id = ANY($1::uuid[]) AND e.id BETWEEN $3 AND $4 AND NOT e.processed`)
)

// scanClaimed reads the rows of a claim run at now: each event, as the
// claim left it, goes to add.
func scanClaimed(now time.Time, add func(WebhookEvent)) func(pgx.Rows) error {
	return func(rows pgx.Rows) error {
		for rows.Next() {
			e := WebhookEvent{Processed: true, ProcessedAt: &now}
			var stored []byte
			if err := rows.Scan(&e.ID, &e.StripeEventID, &e.EventType, &stored, &e.RetryCount,
				&e.ReceivedAt, &e.CreatedAt, &e.Traceparent); err != nil {
				return err
			}
			e.Payload, e.payloadErr = payload.Decode(stored)
			if e.payloadErr != nil {
				e.payloadErr = fmt.Errorf("store: read the payload of %s: %w", e.StripeEventID, e.payloadErr)
			}
			add(e)
		}
		return rows.Err()
	}
}

// readProcessedAlone is readProcessed outside a transaction, reading the
// partition of the event's day by its name first: a read of webhook_events
// is planned afresh each time (its plan takes in the one partition the id
// names), which cost Postgres about five times the read itself, while the
// day's partition is a plain table whose plan is made once. If the day has
// no partition of its own (an event older than the partitions made, or
// expired), that read fails at once (an error Postgres logs), and
// webhook_events is read.
func readProcessedAlone(ctx context.Context, conn *pgx.Conn, webhookID string) (processed, found bool, err error) {
	if part, ok := dayPartition(webhookID); ok {
		err = conn.QueryRow(ctx, "SELECT processed FROM "+pgx.Identifier{part}.Sanitize()+" WHERE id = $1",
			webhookID).Scan(&processed)
		var pgErr *pgconn.PgError
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return false, false, nil
		case err == nil:
			return processed, true, nil
		case !errors.As(err, &pgErr) || pgErr.Code != undefinedTable:
			return false, false, err
		}
	}
	return readProcessed(ctx, conn, webhookID)
}

// undefinedTable is Postgres's SQLSTATE for a table that does not exist.
const undefinedTable = "42P01"

// readProcessed reads whether the event's row is processed; found is false
// when there is no such row.
func readProcessed(ctx context.Context, conn *pgx.Conn, webhookID string) (processed, found bool, err error) {
	err = conn.QueryRow(ctx, "SELECT processed FROM webhook_events WHERE id = $1", webhookID).Scan(&processed)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, false, nil
	}
	return processed, err == nil, err
}

// applyError is a failure of the event's handler or of its commit: the
// event's own, recorded against it.
type applyError struct{ err error }

func (e *applyError) Error() string { return e.err.Error() }
func (e *applyError) Unwrap() error { return e.err }

// ErrNotAttempted is wrapped in an error of ProcessEvent, ReplayEvent or
// Applier.Process when the event's handler never ran: nothing was recorded
// against the event, and its job may simply run again.
var ErrNotAttempted = errors.New("store: event not attempted")

// notAttempted marks err as ErrNotAttempted, keeping its message.
type notAttempted struct{ err error }

func (e *notAttempted) Error() string   { return e.err.Error() }
func (e *notAttempted) Unwrap() []error { return []error{e.err, ErrNotAttempted} }

// RecordFailure sets the event's error, counts one more failed attempt, and
// notes what follows: the dead set, or a retry at attempt.RetryAt; its
// pending row says the same, for the sweeper and the console. A processed
// event (a failed replay) keeps its state.
func (s *Store) RecordFailure(ctx context.Context, webhookID string, cause error, attempt Attempt) error {
	msg := cause.Error()
	if len(msg) > 4000 {
		msg = strings.ToValidUTF8(msg[:4000], "")
	}
	var deadAt, nextAt *time.Time
	now := time.Now().UTC()
	keep := !attempt.Final && attempt.RetryAt.IsZero() // leave dead_at and next_attempt_at
	if attempt.Final {
		deadAt = &now
	} else if !attempt.RetryAt.IsZero() {
		retryAt := attempt.RetryAt.UTC()
		nextAt = &retryAt
	}
	return s.withConn(ctx, func(conn *pgx.Conn) error {
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		b.Queue(`UPDATE pending_events SET failed = true,
				next_attempt_at = CASE WHEN $4 THEN next_attempt_at ELSE $2 END,
				dead = CASE WHEN $4 THEN dead ELSE $3 END
			WHERE id = $1`, webhookID, nextAt, deadAt != nil, keep)
		b.Queue(`UPDATE webhook_events SET error = $2, retry_count = retry_count + 1,
				dead_at = CASE WHEN $5 THEN dead_at ELSE $3 END,
				next_attempt_at = CASE WHEN $5 THEN next_attempt_at ELSE $4 END
			WHERE id = $1 AND NOT processed`, webhookID, msg, deadAt, nextAt, keep)
		b.Queue("COMMIT")
		return conn.SendBatch(ctx, b).Close()
	})
}
