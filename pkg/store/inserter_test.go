package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"stripe-webhooks/pkg/store"
)

// Many concurrent deliveries, a third of them repeats: one row per event id,
// exactly one caller per id told "inserted", every caller given its row.
func TestInserterGroupCommit(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	in, err := s.NewInserter(store.InserterOptions{Batches: 2, MaxBatch: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	// One event stored and processed before: a repeat of it is not inserted.
	old := insert(t, s, "evt_old")
	s.DB().Exec("UPDATE webhook_events SET processed = true WHERE id = ?", old)

	const clients, perClient = 12, 30
	type answer struct {
		id  string
		res store.Stored
	}
	answers := make(chan answer, clients*perClient+clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				id := fmt.Sprintf("evt_gc_%d", (c*perClient+i)%(clients*perClient*2/3))
				res, err := in.Insert(context.Background(), store.NewEvent{StripeEventID: id, EventType: "account.updated",
					Payload: []byte(`{"id":"` + id + `"}`), ReceivedAt: time.Now()})
				if err != nil {
					t.Error(err)
					return
				}
				answers <- answer{id, res}
			}
			res, err := in.Insert(context.Background(), store.NewEvent{StripeEventID: "evt_old", EventType: "account.updated", Payload: []byte(`{}`), ReceivedAt: time.Now()})
			if err != nil || res.Inserted || !res.Processed || res.WebhookID != old {
				t.Errorf("repeat of a processed event: %+v, %v", res, err)
			}
		}()
	}
	wg.Wait()
	close(answers)
	inserted := map[string]int{}
	rowOf := map[string]string{}
	for a := range answers {
		if a.res.Inserted {
			inserted[a.id]++
		}
		if prev, ok := rowOf[a.id]; ok && prev != a.res.WebhookID {
			t.Errorf("%s answered with rows %s and %s", a.id, prev, a.res.WebhookID)
		}
		rowOf[a.id] = a.res.WebhookID
	}
	var rows int64
	s.DB().Raw("SELECT count(*) FROM webhook_events WHERE stripe_event_id LIKE 'evt_gc_%'").Scan(&rows)
	if rows != int64(len(rowOf)) || len(inserted) != len(rowOf) {
		t.Errorf("%d rows, %d ids, %d ids reported inserted", rows, len(rowOf), len(inserted))
	}
	for id, n := range inserted {
		if n != 1 {
			t.Errorf("%s reported inserted %d times", id, n)
		}
	}
}

// A row Postgres refuses fails alone; the rest of its batch is stored, and
// the hook sees every committed row.
func TestInserterIsolatesABadRowAndRunsTheHook(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	var mu sync.Mutex
	hooked := map[string]bool{}
	in, err := s.NewInserter(store.InserterOptions{MaxBatch: 64, AfterCommit: func(_ context.Context, rows []store.Committed) error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range rows {
			hooked[r.StripeEventID] = true
		}
		return fmt.Errorf("redis is down")
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var wg sync.WaitGroup
	errs := make([]error, 40)
	results := make([]store.Stored, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			typ := "account.updated"
			if i == 7 {
				typ = tooLongType // event_type is varchar(100)
			}
			results[i], errs[i] = in.Insert(context.Background(), store.NewEvent{StripeEventID: fmt.Sprintf("evt_iso_%d", i),
				EventType: typ, Payload: fmt.Appendf(nil, `{"id":"evt_iso_%d"}`, i), ReceivedAt: time.Now()})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (i == 7) {
			t.Errorf("delivery %d: %v", i, err)
		}
		if i != 7 && (results[i].AfterCommitErr == nil || !hooked[fmt.Sprintf("evt_iso_%d", i)]) {
			t.Errorf("delivery %d: the hook did not run or its error was lost: %+v", i, results[i])
		}
	}
	var rows int64
	s.DB().Raw("SELECT count(*) FROM webhook_events").Scan(&rows)
	if rows != 39 {
		t.Errorf("%d rows, want 39", rows)
	}
}

// A batch whose statement fails is not silent: BatchFailed is told its
// cause and size once, and its good rows are still stored.
func TestInserterReportsAFailedBatch(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	type failure struct {
		err        error
		deliveries int
	}
	var failures []failure
	in, err := s.NewInserter(store.InserterOptions{MaxBatch: 8, BatchFailed: func(err error, deliveries int) {
		failures = append(failures, failure{err, deliveries})
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var evs []store.NewEvent
	for i, typ := range []string{"account.updated", tooLongType, "account.updated"} {
		evs = append(evs, store.NewEvent{StripeEventID: fmt.Sprintf("evt_bf_%d", i), EventType: typ,
			Payload: fmt.Appendf(nil, `{"id":"evt_bf_%d"}`, i), ReceivedAt: time.Now()})
	}
	errs := in.StoreBatch(evs)
	if errs[0] != nil || errs[1] == nil || errs[2] != nil {
		t.Fatalf("errors %v, want only the second row's", errs)
	}
	if len(failures) != 1 || failures[0].deliveries != 3 || failures[0].err == nil {
		t.Fatalf("BatchFailed calls = %+v, want one for the batch of 3 with its cause", failures)
	}
	// Alone, a row's failure is its caller's to see: no batch failed.
	in.StoreBatch(evs[1:2])
	if len(failures) != 1 {
		t.Errorf("a single-row statement's failure was reported as a failed batch: %+v", failures)
	}
}

// tooLongType is an event type the table refuses: event_type is
// varchar(100).
var tooLongType = "account." + strings.Repeat("x", 100)
