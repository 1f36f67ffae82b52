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

// ProcessEvent applies the event with row id webhookID exactly once in
// effect: in one transaction it locks the row, skips it if already
// processed, runs apply, marks it processed and commits. Two calls for the
// same event at once serialise on the row lock; the second finds it
// processed. When apply fails, the transaction is rolled back and the
// failure is recorded (error set, retry_count incremented) before the error
// is returned.
func (s *Store) ProcessEvent(ctx context.Context, webhookID string, apply ApplyFunc) (Outcome, WebhookEvent, error) {
	var (
		outcome Outcome
		event   WebhookEvent
	)
	err := s.db.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		err := db.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", webhookID).Take(&event).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			outcome = Missing
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: lock event: %w", err)
		}
		if event.Processed {
			outcome = AlreadyProcessed
			return nil
		}
		if err := safeApply(ctx, &Tx{db: db}, event, apply); err != nil {
			return &applyError{err: err}
		}
		now := time.Now().UTC()
		res := db.Model(&WebhookEvent{}).Where("id = ?", webhookID).
			Updates(map[string]any{"processed": true, "processed_at": now, "error": nil})
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
	if recErr := s.RecordFailure(recordCtx, webhookID, err); recErr != nil {
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

// RecordFailure sets the event's error and counts one more failed attempt.
func (s *Store) RecordFailure(ctx context.Context, webhookID string, cause error) error {
	msg := cause.Error()
	if len(msg) > 4000 {
		msg = msg[:4000]
	}
	return s.db.WithContext(ctx).Model(&WebhookEvent{}).
		Where("id = ? AND processed = false", webhookID).
		Updates(map[string]any{"error": msg, "retry_count": gorm.Expr("retry_count + 1")}).Error
}
