package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
)

// EventKey is sw_event_id: the ingest's and the migration's ids of an
// event agree, for every `created` (before 1970 and past 48 bits of
// milliseconds included).
func TestEventKeyIsTheSQLEventID(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	for _, created := range []int64{1, 1_700_000_000, 1_765_000_000, 0, -5, 281_474_976_709, 281_474_976_710, 1 << 40} {
		for _, id := range []string{"evt_1", "evt_1NvT2oLkdIwHu7ixXxzXaB4k", ""} {
			var sql string
			if err := s.DB().Raw("SELECT sw_event_id(?, ?)::text", created, id).Scan(&sql).Error; err != nil {
				t.Fatal(err)
			}
			if got := store.EventKey(time.Unix(created, 0), id); got != sql {
				t.Errorf("EventKey(%d, %q) = %s, sw_event_id = %s", created, id, got, sql)
			}
		}
	}
}

// partitionOf is the partition holding the event with Stripe id id.
func partitionOf(t *testing.T, s *store.Store, id string) string {
	t.Helper()
	var part string
	if err := s.DB().Raw("SELECT tableoid::regclass::text FROM webhook_events WHERE stripe_event_id = ?", id).Scan(&part).Error; err != nil {
		t.Fatal(err)
	}
	return part
}

// insertCreated stores an account.updated created at created, and returns
// its row's id.
func insertCreated(t *testing.T, s *store.Store, id string, created time.Time) string {
	t.Helper()
	p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: id, Created: created})
	res, err := s.InsertEvent(context.Background(), store.NewEvent{StripeEventID: id, EventType: "account.updated",
		Payload: p, ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return res.WebhookID
}

// An event of a day without a partition is kept in the past or future
// partition; making the partitions of those days moves it into its day's,
// emptying the past and future partitions, and it is still found and
// still a duplicate when delivered again.
func TestPartitionsMadeTakeTheirDaysRowsFromThePastAndFuturePartitions(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	ago, ahead := time.Now().AddDate(0, 0, -20), time.Now().AddDate(0, 0, 20)
	insertCreated(t, s, "evt_ago", ago)
	insertCreated(t, s, "evt_ahead", ahead)
	if p := partitionOf(t, s, "evt_ago"); p != "webhook_events_past" {
		t.Errorf("an event of 20 days ago is in %s before its partition exists, want webhook_events_past", p)
	}
	if p := partitionOf(t, s, "evt_ahead"); p != "webhook_events_future" {
		t.Errorf("an event 20 days ahead is in %s before its partition exists, want webhook_events_future", p)
	}
	made, err := s.EnsurePartitions(ctx, ago, ahead)
	if err != nil {
		t.Fatal(err)
	}
	if made < 40-8 { // the template has today's and the week ahead's
		t.Errorf("made %d partitions for 41 days, want those missing", made)
	}
	for id, at := range map[string]time.Time{"evt_ago": ago, "evt_ahead": ahead} {
		if p, want := partitionOf(t, s, id), "webhook_events_p"+at.UTC().Format("20060102"); p != want {
			t.Errorf("%s is in %s, want %s", id, p, want)
		}
		again := insertCreated(t, s, id, at)
		if e, err := s.EventByStripeID(ctx, id); err != nil || e.ID != again {
			t.Errorf("%s delivered again: row %s, stored %s (%v)", id, again, e.ID, err)
		}
	}
	var left int64
	s.DB().Raw("SELECT (SELECT count(*) FROM webhook_events_past) + (SELECT count(*) FROM webhook_events_future)").Scan(&left)
	if left != 0 {
		t.Errorf("%d rows left in the past and future partitions", left)
	}
	if n, err := s.EnsurePartitions(ctx, ago, ahead); err != nil || n != 0 {
		t.Errorf("made %d partitions again (%v), want none", n, err)
	}
	var rows int64
	s.DB().Raw("SELECT count(*) FROM webhook_events").Scan(&rows)
	if rows != 2 {
		t.Errorf("%d rows, want 2", rows)
	}
}

// Concurrent deliveries of the same events, created on days in different
// partitions (the past one, a day's, the future one) and through both
// insert paths, store each event once; so does a redelivery days later.
func TestConcurrentDuplicatesAcrossPartitionsGiveOneRowEach(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	if _, err := s.EnsurePartitions(ctx, time.Now().AddDate(0, 0, -3), time.Now()); err != nil {
		t.Fatal(err)
	}
	in, err := s.NewInserter(store.InserterOptions{MaxBatch: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var events []store.NewEvent
	for i, days := range []int{-40, -3, -2, -1, 0, 30} {
		id := fmt.Sprintf("evt_dup_%d", i)
		events = append(events, store.NewEvent{StripeEventID: id, EventType: "account.updated", ReceivedAt: time.Now(),
			Payload: stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: id,
				Created: time.Now().AddDate(0, 0, days)})})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	inserted := map[string]int{}
	for g := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, e := range events {
				var res store.Stored
				var err error
				if g%2 == 0 {
					res, err = s.InsertEvent(ctx, e)
				} else {
					res, err = in.Insert(ctx, e)
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if res.Inserted {
					inserted[e.StripeEventID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, e := range events {
		if inserted[e.StripeEventID] != 1 {
			t.Errorf("%s inserted %d times, want 1", e.StripeEventID, inserted[e.StripeEventID])
		}
	}
	var rows, pending int64
	s.DB().Raw("SELECT (SELECT count(*) FROM webhook_events), (SELECT count(*) FROM pending_events)").Row().Scan(&rows, &pending)
	if rows != int64(len(events)) || pending != int64(len(events)) {
		t.Errorf("%d rows and %d pending, want %d of each", rows, pending, len(events))
	}
	late := events[1]
	late.ReceivedAt = time.Now().Add(72 * time.Hour)
	if res, err := s.InsertEvent(ctx, late); err != nil || res.Inserted {
		t.Errorf("a redelivery three days later: %+v, %v; want the stored row", res, err)
	}
}

// Retention drops an old day's partition, and its events not processed
// yet (waiting, failing, dead) move to the past partition, keeping their
// state and pending rows: they are still listed, retried, replayed and
// processed once.
func TestExpireEventsMovesTheUnprocessedAndDeadEventsOfADay(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	old := time.Now().AddDate(0, 0, -40)
	if _, err := s.EnsurePartitions(ctx, old, time.Now()); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, name := range []string{"done_1", "done_2", "waiting", "failing", "dead"} {
		ids[name] = insertCreated(t, s, "evt_exp_"+name, old)
	}
	noop := func(context.Context, *store.Tx, store.WebhookEvent) error { return nil }
	for _, name := range []string{"done_1", "done_2"} {
		if out, _, err := s.ProcessEvent(ctx, ids[name], store.Attempt{}, noop); err != nil || out != store.Applied {
			t.Fatalf("%s: %v, %v", name, out, err)
		}
	}
	if err := s.RecordFailure(ctx, ids["failing"], errors.New("boom"), store.Attempt{RetryAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordFailure(ctx, ids["dead"], errors.New("boom"), store.Attempt{Final: true}); err != nil {
		t.Fatal(err)
	}
	ex, err := s.ExpireEvents(ctx, time.Now().AddDate(0, 0, -30))
	if err != nil {
		t.Fatal(err)
	}
	if ex.Events != 5 || ex.Kept != 3 || len(ex.Partitions) != 10 {
		t.Errorf("expired %+v, want 10 days' partitions holding 5 events, 3 kept", ex)
	}
	for name, want := range map[string]string{"waiting": store.StatusWaiting, "failing": store.StatusFailing, "dead": store.StatusDead} {
		if p := partitionOf(t, s, "evt_exp_"+name); p != "webhook_events_past" {
			t.Errorf("%s is in %s after retention, want webhook_events_past", name, p)
		}
		if e, err := s.EventByStripeID(ctx, "evt_exp_"+name); err != nil || e.Status() != want || e.ID != ids[name] {
			t.Errorf("%s after retention: %s %s (%v), want %s %s", name, e.ID, e.Status(), err, ids[name], want)
		}
	}
	dead, err := s.ListEvents(ctx, store.EventFilter{Status: store.StatusDead}, store.Cursor{}, 10)
	if err != nil || len(dead) != 1 || dead[0].StripeEventID != "evt_exp_dead" {
		t.Errorf("dead list after retention: %+v (%v)", dead, err)
	}
	for _, name := range []string{"waiting", "failing", "dead"} {
		if out, _, err := s.ProcessEvent(ctx, ids[name], store.Attempt{}, noop); err != nil || out != store.Applied {
			t.Errorf("%s processed after retention: %v, %v", name, out, err)
		}
	}
	if n, err := s.CountUnprocessed(ctx); err != nil || n != 0 {
		t.Errorf("%d unprocessed (%v), want 0", n, err)
	}
	var tuples int64
	s.DB().Raw("SELECT count(*) FROM pg_class WHERE relname = ?", "webhook_events_p"+old.UTC().Format("20060102")).Scan(&tuples)
	if tuples != 0 {
		t.Error("the old day's partition is still there")
	}
}
