package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stripe-webhooks/pkg/store"
)

// KnownAccounts tells deauthorized accounts apart; a reconcile mark keeps
// the last attempt and the furthest successful window, never moving back,
// for the platform ("") as for any account.
func TestReconcileMarks(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	db := s.DB()
	if err := db.Exec(`INSERT INTO stripe_connected_accounts (stripe_account_id, deauthorized_at, updated_at, created_at)
		VALUES ('acct_b_connected', NULL, now(), now()), ('acct_a_gone', now(), now(), now())`).Error; err != nil {
		t.Fatal(err)
	}
	known, err := s.KnownAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.KnownAccount{{StripeAccountID: "acct_a_gone", Deauthorized: true}, {StripeAccountID: "acct_b_connected"}}
	if diff := cmp.Diff(want, known); diff != "" {
		t.Errorf("KnownAccounts (-want +got):\n%s", diff)
	}

	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	steps := []func() error{
		func() error { return s.MarkReconcileAttempt(ctx, "", t0) },
		func() error { return s.MarkReconciled(ctx, "", t0.Add(-5*time.Minute)) },
		func() error { return s.MarkReconcileAttempt(ctx, "", t0.Add(time.Hour)) },
		func() error { return s.MarkReconciled(ctx, "", t0.Add(-time.Hour)) }, // older: ignored
		func() error { return s.MarkReconcileAttempt(ctx, "acct_b_connected", t0.Add(2*time.Hour)) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	marks, err := s.ReconcileMarks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	until := t0.Add(-5 * time.Minute)
	wantMarks := map[string]store.ReconcileMark{
		"":                 {StripeAccountID: "", AttemptedAt: t0.Add(time.Hour), ReconciledUntil: &until},
		"acct_b_connected": {StripeAccountID: "acct_b_connected", AttemptedAt: t0.Add(2 * time.Hour)},
	}
	if diff := cmp.Diff(wantMarks, marks); diff != "" {
		t.Errorf("ReconcileMarks (-want +got):\n%s", diff)
	}
}
