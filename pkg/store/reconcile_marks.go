package store

import (
	"context"
	"fmt"
	"time"
)

// ReconcileMark is where periodic reconcile left one account (the platform
// is the account "").
type ReconcileMark struct {
	StripeAccountID string
	// AttemptedAt is when a run last took the account, whatever came of it.
	AttemptedAt time.Time
	// ReconciledUntil is the end of the window of its last successful
	// reconcile; nil until one succeeds.
	ReconciledUntil *time.Time
}

// TableName is the table of reconcile marks.
func (ReconcileMark) TableName() string { return "reconcile_accounts" }

// ReconcileMarks returns every account's mark, by account id.
func (s *Store) ReconcileMarks(ctx context.Context) (map[string]ReconcileMark, error) {
	var rows []ReconcileMark
	if err := s.db.WithContext(ctx).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: reconcile marks: %w", err)
	}
	marks := make(map[string]ReconcileMark, len(rows))
	for _, m := range rows {
		marks[m.StripeAccountID] = m
	}
	return marks, nil
}

// MarkReconcileAttempt records that a run took account at at.
func (s *Store) MarkReconcileAttempt(ctx context.Context, account string, at time.Time) error {
	err := s.db.WithContext(ctx).Exec(`INSERT INTO reconcile_accounts (stripe_account_id, attempted_at) VALUES (?, ?)
		ON CONFLICT (stripe_account_id) DO UPDATE SET attempted_at = excluded.attempted_at`, account, at.UTC()).Error
	if err != nil {
		return fmt.Errorf("store: mark reconcile attempt of %q: %w", account, err)
	}
	return nil
}

// MarkReconciled records that every event of account created before until
// has been listed; it never moves an account's mark back.
func (s *Store) MarkReconciled(ctx context.Context, account string, until time.Time) error {
	at := until.UTC()
	err := s.db.WithContext(ctx).Exec(`INSERT INTO reconcile_accounts (stripe_account_id, attempted_at, reconciled_until) VALUES (?, ?, ?)
		ON CONFLICT (stripe_account_id) DO UPDATE
		SET reconciled_until = GREATEST(reconcile_accounts.reconciled_until, excluded.reconciled_until)`, account, at, at).Error
	if err != nil {
		return fmt.Errorf("store: mark %q reconciled: %w", account, err)
	}
	return nil
}
