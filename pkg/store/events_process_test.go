package store_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/testenv"
)

// Two jobs for one event at once: the second waits on the row lock, then
// finds the event processed. The handler runs once.
func TestProcessEventConcurrentJobsApplyOnce(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	id := insert(t, s, "evt_twice")
	var calls atomic.Int32
	release := make(chan struct{})
	apply := func(ctx context.Context, tx *store.Tx, e store.WebhookEvent) error {
		if calls.Add(1) == 1 {
			<-release
		}
		return nil
	}
	type result struct {
		out store.Outcome
		err error
	}
	results := make(chan result, 2)
	go func() {
		o, _, err := s.ProcessEvent(context.Background(), id, store.Attempt{}, apply)
		results <- result{o, err}
	}()
	testenv.Eventually(t, 10*time.Second, "the first job to hold the row", func() bool { return calls.Load() == 1 })
	go func() {
		o, _, err := s.ProcessEvent(context.Background(), id, store.Attempt{}, apply)
		results <- result{o, err}
	}()
	testenv.Eventually(t, 10*time.Second, "the second job to wait on the row lock", func() bool {
		var waiting int64
		err := s.DB().Raw(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting).Error
		return err == nil && waiting == 1
	})
	close(release)
	got := map[store.Outcome]int{}
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		got[r.out]++
	}
	if calls.Load() != 1 || got[store.Applied] != 1 || got[store.AlreadyProcessed] != 1 {
		t.Errorf("handler ran %d times, outcomes %v; want once, one applied and one already processed", calls.Load(), got)
	}
	row, err := s.EventByStripeID(context.Background(), "evt_twice")
	if err != nil {
		t.Fatal(err)
	}
	if !row.Processed || row.ProcessedAt == nil || row.RetryCount != 0 {
		t.Errorf("row = %+v", row)
	}
}

func TestProcessEventFailureRollsBackAndCounts(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	id := insert(t, s, "evt_fail")
	boom := errors.New("boom")
	_, _, err := s.ProcessEvent(context.Background(), id, store.Attempt{}, func(ctx context.Context, tx *store.Tx, e store.WebhookEvent) error {
		if err := tx.ApplyCapability(ctx, store.CapabilityUpdate{AccountID: "acct_rollback", Capability: "card_payments", Status: "active",
			EventCreated: time.Now()}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	row, _ := s.EventByStripeID(context.Background(), "evt_fail")
	if row.Processed || row.RetryCount != 1 || row.Error == nil || *row.Error != "boom" {
		t.Errorf("row = processed %v retry_count %d error %v", row.Processed, row.RetryCount, row.Error)
	}
	if _, err := s.Account(context.Background(), "acct_rollback"); !store.IsNotFound(err) {
		t.Errorf("the failed handler's write was not rolled back: %v", err)
	}
	// A job for a row that no longer exists completes without effect.
	out, _, err := s.ProcessEvent(context.Background(), "00000000-0000-4000-8000-000000000000", store.Attempt{}, func(context.Context, *store.Tx, store.WebhookEvent) error {
		t.Error("handler ran for a missing row")
		return nil
	})
	if err != nil || out != store.Missing {
		t.Errorf("missing row: %v, %v", out, err)
	}
}

// Only what the event's own handler did is recorded against it: not a
// context that was done before anything ran, nor another transaction
// holding its row past the deadline; its handler outlasting the deadline
// is.
func TestProcessEventRecordsOnlyItsHandlersFailure(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	id := insert(t, s, "evt_own")
	var calls atomic.Int32
	apply := func(ctx context.Context, tx *store.Tx, e store.WebhookEvent) error {
		calls.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.ProcessEvent(expired, id, store.Attempt{Final: true}, apply); !errors.Is(err, store.ErrNotAttempted) || !errors.Is(err, context.Canceled) {
		t.Errorf("done context: %v; want not attempted, canceled", err)
	}
	held := s.DB().Begin()
	if err := held.Exec("SELECT 1 FROM webhook_events WHERE id = ? FOR UPDATE", id).Error; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, _, err := s.ProcessEvent(ctx, id, store.Attempt{Final: true}, apply)
	cancel()
	held.Rollback()
	if !errors.Is(err, store.ErrNotAttempted) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("row held past the deadline: %v; want not attempted, deadline exceeded", err)
	}
	row, _ := s.EventByStripeID(context.Background(), "evt_own")
	if calls.Load() != 0 || row.RetryCount != 0 || row.Error != nil || row.DeadAt != nil {
		t.Errorf("not attempted: handler ran %d times, row retry_count %d error %q dead_at %v; want untouched", calls.Load(), row.RetryCount, deref(row.Error), row.DeadAt)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, _, err := s.ProcessEvent(ctx, id, store.Attempt{RetryAt: time.Now().Add(time.Hour)}, apply); err == nil || errors.Is(err, store.ErrNotAttempted) {
		t.Errorf("handler past its deadline: %v; want its own failure", err)
	}
	row, _ = s.EventByStripeID(context.Background(), "evt_own")
	if calls.Load() != 1 || row.RetryCount != 1 || row.Error == nil || row.NextAttemptAt == nil {
		t.Errorf("its own failure: handler ran %d times, row retry_count %d error %q next_attempt_at %v; want once, 1, recorded", calls.Load(), row.RetryCount, deref(row.Error), row.NextAttemptAt)
	}
}

// A replay of a processed event whose handler fails leaves the event's
// record as it was: processed, no error, its retry_count and dead_at
// unchanged.
func TestFailedReplayOfAProcessedEventKeepsItsRecord(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	id := insert(t, s, "evt_replay_fails")
	fail := func(context.Context, *store.Tx, store.WebhookEvent) error { return errors.New("boom") }
	// One failed attempt, then applied.
	if _, _, err := s.ProcessEvent(ctx, id, store.Attempt{RetryAt: time.Now().Add(time.Minute)}, fail); err == nil {
		t.Fatal("a failing handler succeeded")
	}
	if out, _, err := s.ProcessEvent(ctx, id, store.Attempt{}, func(context.Context, *store.Tx, store.WebhookEvent) error { return nil }); err != nil || out != store.Applied {
		t.Fatalf("outcome %v, error %v", out, err)
	}
	if _, _, err := s.ReplayEvent(ctx, id, fail); err == nil {
		t.Fatal("a failing replay succeeded")
	}
	row, err := s.EventByStripeID(ctx, "evt_replay_fails")
	if err != nil {
		t.Fatal(err)
	}
	if !row.Processed || row.Error != nil || row.RetryCount != 1 || row.DeadAt != nil {
		t.Errorf("after a failed replay: processed %v, error %q, retry_count %d, dead_at %v; want true, none, 1, none",
			row.Processed, deref(row.Error), row.RetryCount, row.DeadAt)
	}
}

// A claim that finds its event already processed, or gone, leaves the claim
// statement prepared on its connection. Read with QueryRow, such a claim
// failed its batch with ErrNoRows, pgx then dropped the batch's prepared
// statements, and the next claim on that connection prepared them again:
// two round trips more.
func TestClaimOfAProcessedEventKeepsItsStatementPrepared(t *testing.T) {
	t.Parallel()
	url := testenv.Database(t, "")
	s, err := store.Open(url, store.Options{MaxConns: 1}) // one session: the statements' own
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	id := insert(t, s, "evt_prepared")
	noop := func(context.Context, *store.Tx, store.WebhookEvent) error { return nil }
	for _, want := range []store.Outcome{store.Applied, store.AlreadyProcessed} {
		if out, _, err := s.ProcessEvent(ctx, id, store.Attempt{}, noop); err != nil || out != want {
			t.Fatalf("outcome %v, error %v; want %v", out, err, want)
		}
	}
	if out, _, err := s.ProcessEvent(ctx, "00000000-0000-4000-8000-000000000000", store.Attempt{}, noop); err != nil || out != store.Missing {
		t.Fatalf("missing row: %v, %v", out, err)
	}
	var prepared int64
	if err := s.DB().Raw(`SELECT count(*) FROM pg_prepared_statements
		WHERE statement LIKE 'UPDATE webhook_events AS e SET processed = true%'`).Scan(&prepared).Error; err != nil {
		t.Fatal(err)
	}
	if prepared != 1 {
		t.Errorf("%d claim statements prepared on the connection after an already processed and a missing event, want 1", prepared)
	}
}

// A payload that no longer reads back (here a damaged frame, whose
// checksum fails) fails its own event as its handler's error would:
// recorded against it, then dead on the last attempt. A group that claimed
// it ahead fails as a handler's error fails it, and its job's event is
// applied on its own.
func TestUnreadablePayloadFailsItsOwnEvent(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	good := insert(t, s, "evt_good")
	damaged := insert(t, s, "evt_damaged")
	if err := s.DB().Exec(`UPDATE webhook_events SET payload = set_byte(payload, length(payload) - 6, get_byte(payload, length(payload) - 6) # 1)
		WHERE id = ?`, damaged).Error; err != nil {
		t.Fatal(err)
	}
	apply := func(context.Context, *store.Tx, store.WebhookEvent) error { return nil }
	a := s.NewApplier(apply, store.ApplierOptions{MaxJobs: 4, Ahead: 4, Timeout: 10 * time.Second})
	defer a.Close()
	if out, _, err := a.Process(ctx, good, store.Attempt{}); err != nil || out != store.Applied {
		t.Fatalf("the good event, with the damaged one claimed ahead: %v, %v", out, err)
	}
	out, _, err := s.ProcessEvent(ctx, damaged, store.Attempt{Final: true}, apply)
	if err == nil || out == store.Applied || errors.Is(err, store.ErrNotAttempted) {
		t.Fatalf("the damaged event: %v, %v; want its own failure", out, err)
	}
	if _, err := s.EventByStripeID(ctx, "evt_damaged"); err == nil || !strings.Contains(err.Error(), "payload") {
		t.Errorf("reading the damaged event: %v; want an error about its payload", err)
	}
	var row struct {
		Error      *string
		RetryCount int
		Dead       bool
	}
	s.DB().Raw(`SELECT e.error, e.retry_count, p.dead FROM webhook_events e JOIN pending_events p ON p.id = e.id WHERE e.id = ?`, damaged).Scan(&row)
	if row.Error == nil || !strings.Contains(*row.Error, "payload") || row.RetryCount != 1 || !row.Dead {
		t.Errorf("damaged event's row: error %v, retry_count %d, dead %v; want its payload's error, 1, dead", row.Error, row.RetryCount, row.Dead)
	}
	var processed bool
	s.DB().Raw(`SELECT processed FROM webhook_events WHERE id = ?`, good).Scan(&processed)
	if !processed {
		t.Error("the good event is not processed")
	}
}
