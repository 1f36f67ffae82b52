package reconcile

import (
	"context"
	"testing"
	"time"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/stripeapi"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/worker/internal/testkit"
)

// The retention limit is checked again for each page of listed events, as
// it is compared with the table: retention runs during a long listing, and
// an event that has come to lie past the limit since the listing began is
// not taken for missing.
func TestReconcileChecksRetentionAtEachPage(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	r := New(Options{Logger: testkit.Discard(), Store: b.Store, Enqueuer: b.Enqueuer, Livemode: config.Livemode{Mode: "any"}, Retention: 72 * time.Hour})
	now := time.Now()
	event := func(created time.Time) stripeapi.Event {
		p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_page_1", Created: created})
		return stripeapi.Event{ID: testkit.EventID(p), Type: "account.updated", Account: "acct_page_1", Created: created.UTC(), Raw: p}
	}
	// Listed when inside the window; past the limit by the time its page is
	// stored (the limit is 72h less RetentionMargin).
	past := event(now.Add(-72*time.Hour + RetentionMargin - time.Minute))
	inside := event(now.Add(-71 * time.Hour))
	n, err := r.storeMissing(context.Background(), "acct_page_1", []stripeapi.Event{past, inside})
	if err != nil || n != 1 {
		t.Fatalf("storeMissing: %d stored, %v; want 1", n, err)
	}
	if _, err := b.Store.EventByStripeID(context.Background(), past.ID); err == nil {
		t.Error("an event past the retention limit was stored")
	}
	if _, err := b.Store.EventByStripeID(context.Background(), inside.ID); err != nil {
		t.Errorf("the event inside the retention was not stored: %v", err)
	}
}
