package maintenance

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/worker/handler"
	"stripe-webhooks/worker/internal/testkit"
)

// Retention removes the processed events of the days past the retention
// by dropping their partition, and keeps the unprocessed ones (waiting and
// dead) of those days: moved to the past partition, still pending.
func TestRetentionDropsOldDaysAndKeepsTheirUnprocessedEvents(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	ctx := context.Background()
	old := time.Now().Add(-40 * 24 * time.Hour)
	if _, err := b.Store.EnsurePartitions(ctx, old, time.Now()); err != nil {
		t.Fatal(err)
	}
	event := func(prefix string, i int, created time.Time) []byte {
		return stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Created: created,
			Account: fmt.Sprintf("acct_%s_%d", prefix, i)})
	}
	b.Seed(t, event("ret_old", 1, old), event("ret_old", 2, old), event("ret_old", 3, old), event("ret_new", 1, time.Now()))
	processAll(t, b)
	b.Seed(t, event("ret_pending", 1, old), event("ret_dead", 1, old))
	if err := b.Store.RecordFailure(ctx, store.EventID(event("ret_dead", 1, old)), errors.New("handler failed"),
		store.Attempt{Final: true}); err != nil {
		t.Fatal(err)
	}
	n, err := NewRetention(testkit.Discard(), b.Store, 30*24*time.Hour).Run(ctx)
	if err != nil || n != 3 {
		t.Fatalf("removed %d, %v; want 3", n, err)
	}
	if left := b.Count(t, "true"); left != 3 {
		t.Errorf("%d events left, want 3 (1 recent processed, 2 old unprocessed)", left)
	}
	if unprocessed := b.Count(t, "NOT processed"); unprocessed != 2 {
		t.Errorf("%d unprocessed left, want 2", unprocessed)
	}
	if n, err := b.Store.CountUnprocessed(ctx); err != nil || n != 2 {
		t.Errorf("%d pending after retention (%v), want 2", n, err)
	}
	var parts int64
	b.Store.DB().Raw("SELECT count(*) FROM pg_class WHERE relname = ?", "webhook_events_p"+old.UTC().Format("20060102")).Scan(&parts)
	if parts != 0 {
		t.Error("the old day's partition was not dropped")
	}
}

// processAll applies every unprocessed event of b.
func processAll(t *testing.T, b *testkit.Backend) {
	t.Helper()
	var ids []string
	b.Store.DB().Raw("SELECT id FROM webhook_events WHERE NOT processed").Scan(&ids)
	for _, id := range ids {
		_, _, _ = b.Store.ProcessEvent(context.Background(), id, store.Attempt{Final: true}, handler.Apply)
	}
}
