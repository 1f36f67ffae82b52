package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"stripe-webhooks/pkg/store"
)

// traceparentOf is the event's stored traceparent; Valid is false for NULL.
func traceparentOf(t *testing.T, s *store.Store, stripeEventID string) sql.NullString {
	t.Helper()
	var tp sql.NullString
	if err := s.DB().Raw("SELECT traceparent FROM webhook_events WHERE stripe_event_id = ?", stripeEventID).Row().Scan(&tp); err != nil {
		t.Fatal(err)
	}
	return tp
}

func traceparentN(i int) string {
	return fmt.Sprintf("00-%032x-%016x-01", i+1, i+1)
}

// A batch of deliveries, some with a traceparent and some without (tracing
// off): each row keeps its own, NULL for none; each caller, and a later
// duplicate, is told the one stored; claims, the sweeper's scan and
// replay's read return it.
func TestTraceparentStoredWithTheEvent(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	in, err := s.NewInserter(store.InserterOptions{MaxBatch: 64, AfterCommit: func(_ context.Context, rows []store.Committed) error {
		for _, r := range rows {
			if r.Traceparent != traceparentFor(r.StripeEventID) {
				return fmt.Errorf("hook: %s has traceparent %q", r.StripeEventID, r.Traceparent)
			}
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			id := fmt.Sprintf("evt_tp_%02d", i)
			res, err := in.Insert(context.Background(), newEvent(id, traceparentFor(id)))
			if err != nil || res.AfterCommitErr != nil || res.Traceparent != traceparentFor(id) {
				t.Errorf("%s: %+v, %v", id, res, err)
			}
		})
	}
	wg.Wait()
	for i := range 40 {
		id := fmt.Sprintf("evt_tp_%02d", i)
		tp := traceparentOf(t, s, id)
		if want := traceparentFor(id); tp.String != want || tp.Valid != (want != "") {
			t.Errorf("%s stored traceparent %+v, want %q (NULL if empty)", id, tp, want)
		}
	}
	// A redelivery, traced or not, is told the first delivery's.
	dup, err := in.Insert(context.Background(), newEvent("evt_tp_00", traceparentN(99)))
	if err != nil || dup.Inserted || dup.Traceparent != traceparentFor("evt_tp_00") {
		t.Errorf("duplicate: %+v, %v", dup, err)
	}
	dup, err = s.InsertEvent(context.Background(), newEvent("evt_tp_01", ""))
	if err != nil || dup.Inserted || dup.Traceparent != traceparentFor("evt_tp_01") {
		t.Errorf("duplicate through InsertEvent: %+v, %v", dup, err)
	}
	refs, err := s.Unqueued(context.Background(), time.Now().Add(time.Hour), store.Cursor{}, 100)
	if err != nil || len(refs) != 40 {
		t.Fatalf("Unqueued: %d, %v", len(refs), err)
	}
	for _, r := range refs {
		if r.Traceparent != traceparentFor(r.StripeEventID) {
			t.Errorf("Unqueued: %s has %q", r.StripeEventID, r.Traceparent)
		}
	}
	_, e, err := s.ProcessEvent(context.Background(), dup.WebhookID, store.Attempt{}, func(context.Context, *store.Tx, store.WebhookEvent) error { return nil })
	if err != nil || e.Traceparent != traceparentFor("evt_tp_01") {
		t.Errorf("claimed event: %+v, %v", e, err)
	}
}

// traceparentFor is the traceparent the test delivers id with: every
// third event has none.
func traceparentFor(id string) string {
	var i int
	_, _ = fmt.Sscanf(id, "evt_tp_%d", &i)
	if i%3 == 0 {
		return ""
	}
	return traceparentN(i)
}

func newEvent(id, traceparent string) store.NewEvent {
	return store.NewEvent{StripeEventID: id, EventType: "account.updated", Payload: []byte(`{"id":"` + id + `"}`),
		ReceivedAt: time.Now(), Traceparent: traceparent}
}
