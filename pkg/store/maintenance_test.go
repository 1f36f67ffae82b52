package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"stripe-webhooks/pkg/store"
)

func TestUnqueuedSkipsProcessedDeadFreshAndWaitingForRetry(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	old := time.Now().Add(-time.Hour)
	for _, id := range []string{"evt_lost_1", "evt_lost_2", "evt_lost_3", "evt_processed", "evt_dead", "evt_retry_later", "evt_retry_due", "evt_fresh"} {
		insert(t, s, id)
	}
	db := s.DB()
	db.Exec("UPDATE webhook_events SET created_at = ? WHERE stripe_event_id <> 'evt_fresh'", old)
	db.Exec("UPDATE webhook_events SET processed = true WHERE stripe_event_id = 'evt_processed'")
	db.Exec("UPDATE webhook_events SET dead_at = now() WHERE stripe_event_id = 'evt_dead'")
	db.Exec("UPDATE webhook_events SET next_attempt_at = ? WHERE stripe_event_id = 'evt_retry_later'", time.Now().Add(time.Minute))
	db.Exec("UPDATE webhook_events SET next_attempt_at = ? WHERE stripe_event_id = 'evt_retry_due'", old)
	syncPending(t, s)

	var got []string
	cursor := store.Cursor{}
	for {
		refs, err := s.Unqueued(ctx, time.Now().Add(-time.Minute), cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) == 0 {
			break
		}
		for _, r := range refs {
			got = append(got, r.StripeEventID)
		}
		cursor = refs[len(refs)-1].Cursor()
	}
	want := map[string]bool{"evt_lost_1": true, "evt_lost_2": true, "evt_lost_3": true, "evt_retry_due": true}
	if len(got) != len(want) {
		t.Fatalf("unqueued = %v, want %v", got, want)
	}
	for _, id := range got {
		if !want[id] {
			t.Errorf("unqueued includes %s", id)
		}
	}
}

func TestClaimPeriodicOncePerPeriod(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	claims := 0
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.ClaimPeriodic(ctx, "sweeper", time.Hour)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				claims++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if claims != 1 {
		t.Errorf("%d replicas claimed the period, want 1", claims)
	}
	if ok, _ := s.ClaimPeriodic(ctx, "retention", time.Hour); !ok {
		t.Error("another task's claim was refused")
	}
	s.DB().Exec("UPDATE periodic_runs SET last_run_at = last_run_at - interval '2 hours' WHERE name = 'sweeper'")
	if ok, _ := s.ClaimPeriodic(ctx, "sweeper", time.Hour); !ok {
		t.Error("next period's claim was refused")
	}
}
