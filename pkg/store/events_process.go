package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"
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

// Tx is the transaction a handler runs in; its methods are the only writes
// handlers make. Reads that decide something (an account's row, locked) go
// to Postgres at once; writes are sent with the commit, in one round trip.
type Tx struct {
	conn    *pgx.Conn
	pending *pgx.Batch
	// accounts are the rows this transaction holds locked, as its queued
	// writes leave them.
	accounts map[string]ConnectedAccount
	// externals are the external accounts' rows it holds locked, as its
	// queued writes leave them (a zero row: none stored); made on first use.
	externals map[string]ExternalAccount
	// resyncTies and reportTie are set by SettleTies.
	resyncTies bool
	reportTie  func(Tie)
	// afterCommit runs once the transaction has committed.
	afterCommit []func()
}

// ApplyFunc applies one event inside tx.
type ApplyFunc func(ctx context.Context, tx *Tx, event WebhookEvent) error

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
// three round trips for a typical event: BEGIN with the row's lock and
// processed mark (one UPDATE … RETURNING); the handler's locking read; the
// handler's writes and COMMIT. The worker opens its store with AsyncCommit: applying is
// idempotent and the event row is the record, so should Postgres crash
// before a commit reaches disk, the handler's writes and the processed mark
// are lost together, the event reads unprocessed, and the sweeper queues it
// again.
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
	sqlDB, err := s.db.DB()
	if err != nil {
		return 0, WebhookEvent{}, &notAttempted{err: err}
	}
	var (
		outcome Outcome
		event   WebhookEvent
	)
	err = withConn(ctx, sqlDB, func(conn *pgx.Conn) error {
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

// withConn lends fn a pgx connection of the pool, and makes sure it goes
// back with no transaction open.
func withConn(ctx context.Context, db *sql.DB, fn func(*pgx.Conn) error) error {
	c, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer c.Close()
	return c.Raw(func(driverConn any) error {
		conn := driverConn.(*stdlib.Conn).Conn()
		err := fn(conn)
		if conn.PgConn().TxStatus() != 'I' && !conn.IsClosed() {
			rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, rbErr := conn.Exec(rbCtx, "ROLLBACK"); rbErr != nil && err == nil {
				err = rbErr
			}
		}
		return err
	})
}

// claimEvent locks the event's row and marks it processed in one
// statement; the handler's failure rolls the mark back with everything else.
// A row already processed is not returned (unless replaying).
const claimEvent = `UPDATE webhook_events SET processed = true, processed_at = $2, error = NULL, dead_at = NULL,
	next_attempt_at = NULL
WHERE id = $1 AND (NOT processed OR $3)
RETURNING stripe_event_id, event_type, payload::text, retry_count, received_at, created_at`

func runEvent(ctx context.Context, conn *pgx.Conn, webhookID string, apply ApplyFunc, replay bool) (Outcome, WebhookEvent, error) {
	now := time.Now().UTC()
	e := WebhookEvent{ID: webhookID, Processed: true, ProcessedAt: &now}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(claimEvent, webhookID, now, replay).QueryRow(func(row pgx.Row) error {
		return row.Scan(&e.StripeEventID, &e.EventType, (*[]byte)(&e.Payload), &e.RetryCount, &e.ReceivedAt, &e.CreatedAt)
	})
	err := conn.SendBatch(ctx, b).Close()
	if errors.Is(err, pgx.ErrNoRows) {
		// Already processed, or no such row: tell which.
		var processed bool
		err := conn.QueryRow(ctx, "SELECT processed FROM webhook_events WHERE id = $1", webhookID).Scan(&processed)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return Missing, WebhookEvent{ID: webhookID}, nil
		case err != nil:
			return 0, WebhookEvent{ID: webhookID}, fmt.Errorf("store: read event: %w", err)
		}
		return AlreadyProcessed, WebhookEvent{ID: webhookID, Processed: true}, nil
	}
	if err != nil {
		return 0, e, fmt.Errorf("store: lock event: %w", err)
	}
	tx := &Tx{conn: conn, pending: &pgx.Batch{}, accounts: map[string]ConnectedAccount{}}
	if err := safeApply(ctx, tx, e, apply); err != nil {
		return 0, e, &applyError{err: err}
	}
	tx.pending.Queue("COMMIT")
	if err := conn.SendBatch(ctx, tx.pending).Close(); err != nil {
		return 0, e, &applyError{err: fmt.Errorf("store: apply and commit: %w", err)}
	}
	tx.committed()
	return Applied, e, nil
}

// safeApply runs apply, turning a panic into an error so that it is rolled
// back and recorded like any other failure.
func safeApply(ctx context.Context, tx *Tx, event WebhookEvent, apply ApplyFunc) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return apply(ctx, tx, event)
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
// notes what follows: the dead set, or a retry at attempt.RetryAt. A
// processed event (a failed replay) keeps its state.
func (s *Store) RecordFailure(ctx context.Context, webhookID string, cause error, attempt Attempt) error {
	msg := cause.Error()
	if len(msg) > 4000 {
		msg = msg[:4000]
	}
	set := map[string]any{"error": msg, "retry_count": gorm.Expr("retry_count + 1")}
	if attempt.Final {
		set["dead_at"], set["next_attempt_at"] = time.Now().UTC(), nil
	} else if !attempt.RetryAt.IsZero() {
		set["dead_at"], set["next_attempt_at"] = nil, attempt.RetryAt.UTC()
	}
	return s.db.WithContext(ctx).Model(&WebhookEvent{}).
		Where("id = ? AND processed = false", webhookID).Updates(set).Error
}
