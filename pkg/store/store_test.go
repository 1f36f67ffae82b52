package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/testenv"
)

// setup returns a store on a new, migrated database, and its URL.
func setup(t *testing.T) (*store.Store, string) {
	t.Helper()
	url := testenv.Database(t, "")
	s, err := store.Open(url, store.Options{MaxConns: 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, url
}

// insert stores an account.updated with Stripe id id, and returns its row's id.
func insert(t *testing.T, s *store.Store, id string) string {
	t.Helper()
	res, err := s.InsertEvent(context.Background(), store.NewEvent{StripeEventID: id, EventType: "account.updated",
		Payload: []byte(`{"id":"` + id + `","type":"account.updated"}`), ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return res.WebhookID
}

// insertFor stores an event of type typ sent for account, and returns its
// row's id.
func insertFor(t *testing.T, s *store.Store, id, typ, account string) string {
	t.Helper()
	res, err := s.InsertEvent(context.Background(), store.NewEvent{StripeEventID: id, EventType: typ, ReceivedAt: time.Now(),
		Payload: fmt.Appendf(nil, `{"id":%q,"type":%q,"account":%q}`, id, typ, account)})
	if err != nil {
		t.Fatal(err)
	}
	return res.WebhookID
}

// syncPending brings pending_events in line with the state a test gave
// webhook_events' rows by hand.
func syncPending(t *testing.T, s *store.Store) {
	t.Helper()
	if err := s.DB().Exec("SELECT sw_sync_pending()").Error; err != nil {
		t.Fatal(err)
	}
}
