package maintenance

import (
	"context"
	"testing"
	"time"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/handler"
	"stripe-webhooks/worker/internal/testkit"
)

// Retention deletes only processed events older than the retention.
func TestRetentionDeletesOnlyOldProcessedEvents(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	b.Seed(t, testkit.Events(4, "ret")...)
	processAll(t, b)
	b.Seed(t, testkit.Events(2, "ret_pending")...)
	db := b.Store.DB()
	db.Exec("UPDATE webhook_events SET created_at = now() - interval '40 days' WHERE stripe_event_id IN (SELECT stripe_event_id FROM webhook_events ORDER BY created_at LIMIT 3)")
	db.Exec("UPDATE webhook_events SET created_at = now() - interval '40 days' WHERE NOT processed")
	r := NewRetention(testkit.Discard(), b.Store, 30*24*time.Hour)
	r.batch = 2
	n, err := r.Run(context.Background())
	if err != nil || n != 3 {
		t.Fatalf("deleted %d, %v; want 3", n, err)
	}
	if left := b.Count(t, "true"); left != 3 {
		t.Errorf("%d events left, want 3 (1 recent processed, 2 old unprocessed)", left)
	}
	if old := b.Count(t, "NOT processed"); old != 2 {
		t.Errorf("%d unprocessed left, want 2", old)
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
