package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"stripe-webhooks/pkg/store"
)

// Events applied together in one group see each other's writes, and a
// failing event fails alone.
func TestApplierGroupsSeeEachOthersWrites(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	const n = 40
	ids := make([]string, n)
	for i := range n {
		ids[i] = insert(t, s, fmt.Sprintf("evt_grp_%02d", i))
	}
	poison := ids[13]
	// Every event sets one capability of one shared account; a group that
	// lost a write would leave a capability missing.
	apply := func(ctx context.Context, tx *store.Tx, e store.WebhookEvent) error {
		if e.ID == poison {
			return fmt.Errorf("poison")
		}
		return tx.ApplyCapability(ctx, "acct_grp", "cap_"+e.StripeEventID, "active", time.Unix(1_700_000_000, 0))
	}
	a := s.NewApplier(apply, store.ApplierOptions{MaxJobs: 8, Timeout: 30 * time.Second})
	defer a.Close()
	var wg sync.WaitGroup
	outcomes := make([]store.Outcome, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outcomes[i], _, errs[i] = a.Process(ctx, ids[i], store.Attempt{})
		}()
	}
	wg.Wait()
	for i := range n {
		if (errs[i] != nil) != (ids[i] == poison) || (errs[i] == nil && outcomes[i] != store.Applied) {
			t.Errorf("event %d: %v, %v", i, outcomes[i], errs[i])
		}
	}
	acct, err := s.Account(ctx, "acct_grp")
	if err != nil {
		t.Fatal(err)
	}
	var caps map[string]string
	_ = json.Unmarshal(acct.Capabilities, &caps)
	if len(caps) != n-1 {
		t.Errorf("%d capabilities, want %d: a grouped write was lost", len(caps), n-1)
	}
	row, _ := s.EventByStripeID(ctx, "evt_grp_13")
	if row.Processed || row.RetryCount != 1 {
		t.Errorf("poison event: processed %v retry_count %d; want false, 1", row.Processed, row.RetryCount)
	}
	// Two jobs of one event in one group: one applies it, the other finds it done.
	twin := insert(t, s, "evt_grp_twin")
	var twinOut [2]store.Outcome
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			twinOut[i], _, _ = a.Process(ctx, twin, store.Attempt{})
		}()
	}
	wg.Wait()
	if got := map[store.Outcome]int{twinOut[0]: 1, twinOut[1]: 1}; twinOut[0] == twinOut[1] || got[store.Applied] != 1 {
		t.Errorf("twin jobs: %v, want one applied and one already processed", twinOut)
	}
	// A second pass finds them processed.
	if out, _, err := a.Process(ctx, ids[0], store.Attempt{}); err != nil || out != store.AlreadyProcessed {
		t.Errorf("again: %v, %v", out, err)
	}
}

// recorder is an ApplyFunc that counts each event's applications and fails
// the ones named poison.
type recorder struct {
	mu     sync.Mutex
	calls  map[string]int
	poison map[string]bool
	ahead  []string
}

func newRecorder(poison ...string) *recorder {
	r := &recorder{calls: map[string]int{}, poison: map[string]bool{}}
	for _, p := range poison {
		r.poison[p] = true
	}
	return r
}

func (r *recorder) apply(_ context.Context, _ *store.Tx, e store.WebhookEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.poison[e.StripeEventID] {
		return fmt.Errorf("poison")
	}
	r.calls[e.StripeEventID]++
	return nil
}

func (r *recorder) appliedAhead(e store.WebhookEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ahead = append(r.ahead, e.StripeEventID)
}

func (r *recorder) takeAhead() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.ahead
	r.ahead = nil
	return a
}

// A group also applies the oldest unprocessed events whose jobs have not
// run, skipping rows another transaction holds (without waiting) and events
// that failed before; their own jobs then find them done.
func TestApplierAppliesAheadOldestFirst(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids := make([]string, 12)
	for i := range ids {
		ids[i] = insert(t, s, fmt.Sprintf("evt_ah_%02d", i))
	}
	// evt_ah_03 failed once and waits for its job's retry.
	if err := s.RecordFailure(ctx, ids[3], fmt.Errorf("boom"), store.Attempt{RetryAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// evt_ah_01 is held by another transaction.
	held := s.DB().Begin()
	if err := held.Exec("SELECT 1 FROM webhook_events WHERE id = ? FOR UPDATE", ids[1]).Error; err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	a := s.NewApplier(r.apply, store.ApplierOptions{MaxJobs: 4, Ahead: 4, Timeout: 20 * time.Second, AppliedAhead: r.appliedAhead})
	defer a.Close()

	if out, _, err := a.Process(ctx, ids[6], store.Attempt{}); err != nil || out != store.Applied {
		t.Fatalf("evt_ah_06: %v, %v", out, err)
	}
	if got, want := fmt.Sprint(r.takeAhead()), "[evt_ah_00 evt_ah_02 evt_ah_04 evt_ah_05]"; got != want {
		t.Errorf("applied ahead %s, want %s", got, want)
	}
	// The next look starts after the newest event claimed so far.
	if out, _, err := a.Process(ctx, ids[7], store.Attempt{}); err != nil || out != store.Applied {
		t.Fatalf("evt_ah_07: %v, %v", out, err)
	}
	if got, want := fmt.Sprint(r.takeAhead()), "[evt_ah_08 evt_ah_09 evt_ah_10 evt_ah_11]"; got != want {
		t.Errorf("applied ahead %s, want %s", got, want)
	}
	held.Rollback()
	// The jobs of events applied ahead find them done; the others apply
	// their own, the one that failed included.
	for i, want := range []store.Outcome{store.AlreadyProcessed, store.Applied, store.AlreadyProcessed, store.Applied,
		store.AlreadyProcessed, store.AlreadyProcessed, store.AlreadyProcessed, store.AlreadyProcessed,
		store.AlreadyProcessed, store.AlreadyProcessed, store.AlreadyProcessed, store.AlreadyProcessed} {
		if out, _, err := a.Process(ctx, ids[i], store.Attempt{}); err != nil || out != want {
			t.Errorf("evt_ah_%02d again: %v, %v; want %v", i, out, err, want)
		}
	}
	for i := range ids {
		if n := r.calls[fmt.Sprintf("evt_ah_%02d", i)]; n != 1 {
			t.Errorf("evt_ah_%02d applied %d times", i, n)
		}
	}
	var left int64
	s.DB().Raw("SELECT count(*) FROM webhook_events WHERE NOT processed").Scan(&left)
	if left != 0 {
		t.Errorf("%d events unprocessed", left)
	}
}

// An event that fails while applied ahead fails nobody else's job, is not
// recorded against (its own job has not run), and is not taken ahead again.
func TestApplierAheadFailureStaysWithItsOwnJob(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids := make([]string, 6)
	for i := range ids {
		ids[i] = insert(t, s, fmt.Sprintf("evt_af_%d", i))
	}
	r := newRecorder("evt_af_1")
	a := s.NewApplier(r.apply, store.ApplierOptions{MaxJobs: 4, Ahead: 8, Timeout: 20 * time.Second, AppliedAhead: r.appliedAhead})
	defer a.Close()

	if out, _, err := a.Process(ctx, ids[0], store.Attempt{}); err != nil || out != store.Applied {
		t.Fatalf("evt_af_0: %v, %v", out, err)
	}
	if got := r.takeAhead(); len(got) != 0 {
		t.Errorf("the failed group applied %v ahead", got)
	}
	row, _ := s.EventByStripeID(ctx, "evt_af_1")
	if row.Processed || row.Error != nil || row.RetryCount != 0 {
		t.Errorf("poison after a look ahead: processed %v, error %v, retry_count %d; want untouched", row.Processed, row.Error, row.RetryCount)
	}
	if out, _, err := a.Process(ctx, ids[2], store.Attempt{}); err != nil || out != store.Applied {
		t.Fatalf("evt_af_2: %v, %v", out, err)
	}
	if got, want := fmt.Sprint(r.takeAhead()), "[evt_af_3 evt_af_4 evt_af_5]"; got != want {
		t.Errorf("applied ahead %s, want %s", got, want)
	}
	// Its own job fails and records it.
	if _, _, err := a.Process(ctx, ids[1], store.Attempt{RetryAt: time.Now().Add(time.Minute)}); err == nil {
		t.Fatal("the poison event's own job succeeded")
	}
	row, _ = s.EventByStripeID(ctx, "evt_af_1")
	if row.Processed || row.Error == nil || row.RetryCount != 1 {
		t.Errorf("poison after its job: processed %v, error %v, retry_count %d", row.Processed, row.Error, row.RetryCount)
	}
}

// Two groups in flight at once, both looking ahead, over shared accounts:
// each event is applied exactly once (no group is rolled back and retried:
// accounts are locked in one order, so groups never deadlock) and no write
// is lost.
func TestApplierConcurrentGroupsApplyEachEventOnce(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	const n = 120
	ids := make([]string, n)
	for i := range n {
		id := fmt.Sprintf("evt_two_%03d", i)
		res, err := s.InsertEvent(ctx, store.NewEvent{StripeEventID: id, EventType: "capability.updated", ReceivedAt: time.Now(),
			Payload: fmt.Appendf(nil, `{"id":%q,"type":"capability.updated","account":"acct_two_%d"}`, id, i%3)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = res.WebhookID
	}
	var mu sync.Mutex
	calls := map[string]int{}
	apply := func(ctx context.Context, tx *store.Tx, e store.WebhookEvent) error {
		mu.Lock()
		calls[e.StripeEventID]++
		mu.Unlock()
		var i int
		_, _ = fmt.Sscanf(e.StripeEventID, "evt_two_%d", &i)
		return tx.ApplyCapability(ctx, fmt.Sprintf("acct_two_%d", i%3), "cap_"+e.StripeEventID, "active", time.Unix(1_700_000_000, 0))
	}
	a := s.NewApplier(apply, store.ApplierOptions{Flushers: 2, MaxJobs: 4, Ahead: 8, Timeout: 30 * time.Second})
	defer a.Close()
	var wg sync.WaitGroup
	outcomes := map[store.Outcome]int{}
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				out, _, err := a.Process(ctx, ids[i], store.Attempt{})
				mu.Lock()
				if err != nil {
					t.Errorf("event %d: %v", i, err)
				}
				outcomes[out]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i := range n {
		if id := fmt.Sprintf("evt_two_%03d", i); calls[id] != 1 {
			t.Errorf("%s applied %d times, want once", id, calls[id])
		}
	}
	if outcomes[store.Applied]+outcomes[store.AlreadyProcessed] != n || outcomes[store.Applied] == 0 {
		t.Errorf("outcomes %v, want %d applied or already processed", outcomes, n)
	}
	total := 0
	for k := range 3 {
		acct, err := s.Account(ctx, fmt.Sprintf("acct_two_%d", k))
		if err != nil {
			t.Fatal(err)
		}
		var caps map[string]string
		_ = json.Unmarshal(acct.Capabilities, &caps)
		total += len(caps)
	}
	if total != n {
		t.Errorf("%d capabilities over the accounts, want %d: a write was lost", total, n)
	}
}
