package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
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
// handlers make.
type Tx struct {
	db *gorm.DB
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
// processed. When apply fails, the transaction is rolled back and the
// failure is recorded (error set, retry_count incremented) before the error
// is returned.
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
	err := s.db.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		// Applying is idempotent and the event row is the record: should
		// Postgres crash before this commit reaches disk, the handler's
		// writes and the processed mark are lost together, the event reads
		// unprocessed, and the sweeper queues it again. So this commit need
		// not wait for the WAL flush (ingest's inserts always do).
		if err := db.Exec("SET LOCAL synchronous_commit TO OFF").Error; err != nil {
			return fmt.Errorf("store: %w", err)
		}
		err := db.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", webhookID).Take(&event).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			outcome = Missing
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: lock event: %w", err)
		}
		if event.Processed && !replay {
			outcome = AlreadyProcessed
			return nil
		}
		if err := safeApply(ctx, &Tx{db: db}, event, apply); err != nil {
			return &applyError{err: err}
		}
		now := time.Now().UTC()
		res := db.Model(&WebhookEvent{}).Where("id = ?", webhookID).
			Updates(map[string]any{"processed": true, "processed_at": now, "error": nil, "dead_at": nil, "next_attempt_at": nil})
		if res.Error != nil {
			return fmt.Errorf("store: mark processed: %w", res.Error)
		}
		event.Processed, event.ProcessedAt, event.Error = true, &now, nil
		outcome = Applied
		return nil
	})
	if err == nil {
		return outcome, event, nil
	}
	// Record the failure outside the rolled-back transaction, even when the
	// job's own deadline is what failed it.
	recordCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var ae *applyError
	if errors.As(err, &ae) {
		err = ae.err
	}
	if recErr := s.RecordFailure(recordCtx, webhookID, err, attempt); recErr != nil {
		return 0, event, fmt.Errorf("%w (and recording the failure failed: %v)", err, recErr)
	}
	return 0, event, err
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

type applyError struct{ err error }

func (e *applyError) Error() string { return e.err.Error() }
func (e *applyError) Unwrap() error { return e.err }

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
