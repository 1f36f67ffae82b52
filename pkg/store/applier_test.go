package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/testenv"
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
		return tx.ApplyCapability(ctx, store.CapabilityUpdate{AccountID: "acct_grp", Capability: "cap_" + e.StripeEventID, Status: "active",
			EventCreated: time.Unix(1_700_000_000, 0)})
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
	if err := json.Unmarshal(acct.Capabilities, &caps); err != nil {
		t.Fatalf("capabilities %q: %v", acct.Capabilities, err)
	}
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

func (r *recorder) appliedAhead(_ context.Context, e store.WebhookEvent) {
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
	// evt_ah_01 is held by another transaction, as a claim holds it: its
	// pending row first, then its row.
	held := s.DB().Begin()
	if err := held.Exec("DELETE FROM pending_events WHERE id = ?", ids[1]).Error; err != nil {
		t.Fatal(err)
	}
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
// is lost; with AccountOf too, where groups create the accounts they need.
func TestApplierConcurrentGroupsApplyEachEventOnce(t *testing.T) {
	t.Parallel()
	t.Run("accounts locked as handlers ask", func(t *testing.T) { concurrentGroups(t, nil) })
	t.Run("accounts created and locked up front", func(t *testing.T) {
		concurrentGroups(t, func(e store.WebhookEvent) string {
			var env struct{ Account string }
			_ = json.Unmarshal(e.Payload, &env)
			return env.Account
		})
	})
}

func concurrentGroups(t *testing.T, accountOf func(store.WebhookEvent) string) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	const n = 120
	ids := make([]string, n)
	for i := range n {
		ids[i] = insertFor(t, s, fmt.Sprintf("evt_two_%03d", i), "capability.updated", fmt.Sprintf("acct_two_%d", i%3))
	}
	var mu sync.Mutex
	calls := map[string]int{}
	apply := func(ctx context.Context, tx *store.Tx, e store.WebhookEvent) error {
		mu.Lock()
		calls[e.StripeEventID]++
		mu.Unlock()
		var i int
		_, _ = fmt.Sscanf(e.StripeEventID, "evt_two_%d", &i)
		return tx.ApplyCapability(ctx, store.CapabilityUpdate{AccountID: fmt.Sprintf("acct_two_%d", i%3), Capability: "cap_" + e.StripeEventID, Status: "active",
			EventCreated: time.Unix(1_700_000_000, 0)})
	}
	a := s.NewApplier(apply, store.ApplierOptions{Groups: 2, MaxJobs: 4, Ahead: 8, Timeout: 30 * time.Second, AccountOf: accountOf})
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
		if err := json.Unmarshal(acct.Capabilities, &caps); err != nil {
			t.Fatalf("capabilities %q: %v", acct.Capabilities, err)
		}
		total += len(caps)
	}
	if total != n {
		t.Errorf("%d capabilities over the accounts, want %d: a write was lost", total, n)
	}
}

// slowApply applies every event at once but slow, whose handler outlasts
// its transaction's deadline (and then returns nil, as a handler that does
// not watch its context would). It notes each event's calls and the
// transaction of its first.
type slowApply struct {
	slow  string
	gate  string        // if set, its handler waits for release
	open  chan struct{} // closed by the gate's handler once it runs
	shut  chan struct{} // closed to release the gate
	mu    sync.Mutex
	calls map[string]int
	first map[string]*store.Tx
}

func newSlowApply(slow, gate string) *slowApply {
	return &slowApply{slow: slow, gate: gate, open: make(chan struct{}), shut: make(chan struct{}),
		calls: map[string]int{}, first: map[string]*store.Tx{}}
}

func (s *slowApply) apply(ctx context.Context, tx *store.Tx, e store.WebhookEvent) error {
	s.mu.Lock()
	s.calls[e.StripeEventID]++
	if s.first[e.StripeEventID] == nil {
		s.first[e.StripeEventID] = tx
	}
	s.mu.Unlock()
	switch e.StripeEventID {
	case s.slow:
		<-ctx.Done()
	case s.gate:
		close(s.open)
		select {
		case <-s.shut:
		case <-ctx.Done():
		}
	}
	return nil
}

func (s *slowApply) callsOf(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[id]
}

// result is what Applier.Process returned to a job.
type result struct {
	out store.Outcome
	err error
}

// inOneGroup runs the job of sa's gate (one of ids, by Stripe id), whose
// handler then holds a's only group loop while the other jobs of ids line
// up for it; released, the loop takes them as one group. It returns what
// each job was answered.
func inOneGroup(t *testing.T, ctx context.Context, a *store.Applier, sa *slowApply, ids map[string]string,
	attempt store.Attempt) map[string]result {
	t.Helper()
	results := map[string]chan result{}
	process := func(name string) {
		res := make(chan result, 1)
		results[name] = res
		go func() {
			out, _, err := a.Process(ctx, ids[name], attempt)
			res <- result{out, err}
		}()
	}
	process(sa.gate)
	select {
	case <-sa.open:
	case <-ctx.Done():
		t.Fatal("the gate's handler did not run")
	}
	for name := range ids {
		if name != sa.gate {
			process(name)
		}
	}
	me := goroutineID()
	testenv.Eventually(t, 10*time.Second, "the other jobs waiting for the group loop",
		func() bool { return waitingForAGroup(me) == len(ids)-1 })
	close(sa.shut)
	out := map[string]result{}
	for name, res := range results {
		out[name] = <-res
	}
	return out
}

// checkRow fails t unless the event's row has the wanted state.
func checkRow(t *testing.T, s *store.Store, id string, processed bool, retries int, errLike string) {
	t.Helper()
	row, err := s.EventByStripeID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("processed %v, retry_count %d, error %q", row.Processed, row.RetryCount, deref(row.Error))
	if row.Processed != processed || row.RetryCount != retries || (errLike == "") != (row.Error == nil) ||
		(row.Error != nil && !strings.Contains(*row.Error, errLike)) {
		t.Errorf("%s: %s; want processed %v, retry_count %d, error like %q", id, got, processed, retries, errLike)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// A slow event applied ahead of its job makes its group pass the deadline:
// the group's job gets its event applied on its own, with a deadline of its
// own, and nothing is recorded against anyone; the slow event is not taken
// ahead again, and only its own job's attempt, on its own, is recorded
// against it.
func TestSlowEventAheadDoesNotChargeHealthyJob(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	slow := insert(t, s, "evt_sa_slow")
	healthy := insert(t, s, "evt_sa_healthy")
	next := insert(t, s, "evt_sa_next")
	sa := newSlowApply("evt_sa_slow", "")
	a := s.NewApplier(sa.apply, store.ApplierOptions{MaxJobs: 4, Ahead: 4, Timeout: 300 * time.Millisecond})
	defer a.Close()

	// The healthy job's group claims the slow event (and the next) ahead.
	if out, _, err := a.Process(ctx, healthy, store.Attempt{RetryAt: time.Now().Add(time.Hour)}); err != nil || out != store.Applied {
		t.Errorf("healthy job: %v, %v; want applied", out, err)
	}
	if sa.callsOf("evt_sa_slow") != 1 {
		t.Fatalf("the slow event was applied %d times in the healthy job's group, want once: the test proves nothing", sa.callsOf("evt_sa_slow"))
	}
	checkRow(t, s, "evt_sa_healthy", true, 0, "")
	checkRow(t, s, "evt_sa_slow", false, 0, "")
	// The next group leaves the slow event to its own job.
	if out, _, err := a.Process(ctx, next, store.Attempt{RetryAt: time.Now().Add(time.Hour)}); err != nil || out != store.Applied {
		t.Errorf("next job: %v, %v; want applied", out, err)
	}
	if n := sa.callsOf("evt_sa_slow"); n != 1 {
		t.Errorf("the slow event was applied %d times, want once: taken ahead again", n)
	}
	checkRow(t, s, "evt_sa_next", true, 0, "")
	checkRow(t, s, "evt_sa_slow", false, 0, "")
	// Its own job: the group times out, then its attempt on its own does.
	if out, _, err := a.Process(ctx, slow, store.Attempt{RetryAt: time.Now().Add(time.Hour)}); err == nil || errors.Is(err, store.ErrNotAttempted) {
		t.Errorf("slow job: %v, %v; want its own failure", out, err)
	}
	checkRow(t, s, "evt_sa_slow", false, 1, "deadline exceeded")
}

// A slow event's job and healthy events' jobs in one group: the group
// passes its deadline, each event is then attempted on its own with a
// deadline of its own; the healthy ones are applied with nothing recorded,
// and the slow one is recorded once, for its own attempt.
func TestSlowEventDoesNotChargeHealthyEventsOfItsGroup(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Created in this order, so that the group applies the healthy events
	// before the slow one.
	names := []string{"evt_sg_gate", "evt_sg_healthy_1", "evt_sg_healthy_2", "evt_sg_slow"}
	ids := map[string]string{}
	for _, name := range names {
		ids[name] = insert(t, s, name)
	}
	sa := newSlowApply("evt_sg_slow", "evt_sg_gate")
	a := s.NewApplier(sa.apply, store.ApplierOptions{MaxJobs: 4, Timeout: time.Second})
	defer a.Close()

	results := inOneGroup(t, ctx, a, sa, ids, store.Attempt{RetryAt: time.Now().Add(time.Hour)})
	for _, name := range names {
		r := results[name]
		want := name != "evt_sg_slow"
		if ok := r.err == nil && r.out == store.Applied; ok != want {
			t.Errorf("job of %s: %v, %v; want applied %v", name, r.out, r.err, want)
		}
		if !want && errors.Is(r.err, store.ErrNotAttempted) {
			t.Errorf("job of %s: %v, not attempted; want its own failure", name, r.err)
		}
	}
	sa.mu.Lock()
	grouped := sa.first["evt_sg_healthy_1"] == sa.first["evt_sg_slow"] && sa.first["evt_sg_healthy_2"] == sa.first["evt_sg_slow"]
	sa.mu.Unlock()
	if !grouped {
		t.Fatal("the healthy events and the slow one were not applied in one group: the test proves nothing")
	}
	checkRow(t, s, "evt_sg_gate", true, 0, "")
	checkRow(t, s, "evt_sg_healthy_1", true, 0, "")
	checkRow(t, s, "evt_sg_healthy_2", true, 0, "")
	checkRow(t, s, "evt_sg_slow", false, 1, "deadline exceeded")
	if n := sa.callsOf("evt_sg_slow"); n != 2 {
		t.Errorf("the slow event was applied %d times, want twice: in the group, then on its own", n)
	}
}

// waitingForAGroup counts the goroutines that goroutine creator started
// and that are blocked in Applier.Process until a group loop takes their
// job (those of tests running in parallel are not counted).
func waitingForAGroup(creator string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	waiting := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		header, frames, _ := strings.Cut(g, "\n")
		if strings.Contains(header, "[select") && strings.HasPrefix(frames, "stripe-webhooks/pkg/store.(*Applier).Process(") &&
			strings.Contains(frames, " in goroutine "+creator+"\n") {
			waiting++
		}
	}
	return waiting
}

// goroutineID is the calling goroutine's number, as stack traces give it.
func goroutineID() string {
	buf := make([]byte, 64)
	header, _, _ := strings.Cut(string(buf[:runtime.Stack(buf, false)]), " [")
	return strings.TrimPrefix(header, "goroutine ")
}

// With AccountOf, a group creates its events' missing accounts and locks
// them all in one round trip before the first handler runs; an event
// AccountOf names no account for gets no row.
func TestApplierCreatesAndLocksAccountsUpFront(t *testing.T) {
	t.Parallel()
	s, url := setup(t)
	ctx := context.Background()
	other, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, `INSERT INTO stripe_connected_accounts (stripe_account_id) VALUES ('acct_up_old')`); err != nil {
		t.Fatal(err)
	}
	ids := []string{
		insertFor(t, s, "evt_up_0", "capability.updated", "acct_up_old"),
		insertFor(t, s, "evt_up_1", "capability.updated", "acct_up_new"),
		insertFor(t, s, "evt_up_2", "charge.succeeded", "acct_up_none"),
	}
	accountOf := func(e store.WebhookEvent) string {
		if e.EventType == "charge.succeeded" {
			return ""
		}
		var env struct{ Account string }
		_ = json.Unmarshal(e.Payload, &env)
		return env.Account
	}
	var mu sync.Mutex
	var checked bool
	apply := func(ctx context.Context, tx *store.Tx, e store.WebhookEvent) error {
		mu.Lock()
		defer mu.Unlock()
		if !checked {
			// The group's first handler: every account is already held.
			checked = true
			for account, want := range map[string]bool{"acct_up_old": true, "acct_up_new": true, "acct_up_none": false} {
				got, err := lockedElsewhere(ctx, other, account)
				if err != nil {
					return fmt.Errorf("checking %s: %w", account, err)
				}
				if got != want {
					t.Errorf("%s held by the group before its first handler: %v, want %v", account, got, want)
				}
			}
		}
		if e.EventType == "charge.succeeded" {
			return nil
		}
		return tx.ApplyCapability(ctx, store.CapabilityUpdate{AccountID: accountOf(e), Capability: "transfers", Status: "active",
			EventCreated: time.Unix(1_700_000_000, 0)})
	}
	r := newRecorder()
	a := s.NewApplier(apply, store.ApplierOptions{MaxJobs: 1, Ahead: 10, Timeout: 30 * time.Second,
		AppliedAhead: r.appliedAhead, AccountOf: accountOf})
	defer a.Close()
	if out, _, err := a.Process(ctx, ids[0], store.Attempt{}); err != nil || out != store.Applied {
		t.Fatalf("outcome %v, error %v", out, err)
	}
	if ahead := r.takeAhead(); len(ahead) != 2 {
		t.Fatalf("applied ahead %v, want the two other events in the same group", ahead)
	}
	if !checked {
		t.Fatal("no handler ran")
	}
	for _, account := range []string{"acct_up_old", "acct_up_new"} {
		acct, err := s.Account(ctx, account)
		if err != nil {
			t.Fatalf("%s: %v", account, err)
		}
		if !strings.Contains(string(acct.Capabilities), `"transfers": "active"`) {
			t.Errorf("%s capabilities %s, want transfers active", account, acct.Capabilities)
		}
	}
	if _, err := s.Account(ctx, "acct_up_none"); err == nil {
		t.Error("acct_up_none has a row; AccountOf named no account for its event")
	}
}

// lockedElsewhere tells, through other, whether another transaction holds
// the account: its row locked, or its insert not yet committed.
func lockedElsewhere(ctx context.Context, other *pgx.Conn, account string) (bool, error) {
	tx, err := other.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '200ms'"); err != nil {
		return false, err
	}
	_, err = tx.Exec(ctx, `INSERT INTO stripe_connected_accounts (stripe_account_id) VALUES ($1)
		ON CONFLICT (stripe_account_id) DO UPDATE SET updated_at = excluded.updated_at`, account)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" {
		return true, nil
	}
	return false, err
}

// A group transaction that fails is not silent: GroupFailed is told its
// cause and how many jobs it held, once, and the events are then applied
// one by one (the healthy one applied, the failing one recorded).
func TestApplierReportsAFailedGroup(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bad := insert(t, s, "evt_gf_bad")
	good := insert(t, s, "evt_gf_good")
	var mu sync.Mutex
	var causes []string
	var jobs []int
	apply := func(_ context.Context, _ *store.Tx, e store.WebhookEvent) error {
		if e.StripeEventID == "evt_gf_bad" {
			return errors.New("handler refused evt_gf_bad")
		}
		return nil
	}
	a := s.NewApplier(apply, store.ApplierOptions{MaxJobs: 4, Ahead: 4, Timeout: 10 * time.Second,
		GroupFailed: func(_ context.Context, err error, n int) {
			mu.Lock()
			defer mu.Unlock()
			causes, jobs = append(causes, err.Error()), append(jobs, n)
		}})
	defer a.Close()
	// The good event's group claims the bad one ahead, and fails with it.
	if out, _, err := a.Process(ctx, good, store.Attempt{RetryAt: time.Now().Add(time.Hour)}); err != nil || out != store.Applied {
		t.Fatalf("good job: %v, %v", out, err)
	}
	mu.Lock()
	if len(causes) != 1 || jobs[0] != 1 || !strings.Contains(causes[0], "handler refused evt_gf_bad") {
		t.Errorf("GroupFailed calls: causes %q, jobs %v; want one, for 1 job, naming the handler's error", causes, jobs)
	}
	mu.Unlock()
	if _, _, err := a.Process(ctx, bad, store.Attempt{RetryAt: time.Now().Add(time.Hour)}); err == nil {
		t.Error("the bad event's own job succeeded")
	}
	checkRow(t, s, "evt_gf_good", true, 0, "")
	checkRow(t, s, "evt_gf_bad", false, 1, "handler refused")
}

// One group's events may lie in many partitions (a reconciled event from
// years ago, today's, one of a later day, one past the partitions made):
// the claim and the read of which exist cover the whole span of its ids,
// and a job whose event has no row is told so.
func TestApplierGroupSpansPartitions(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now()
	ids := map[string]string{"evt_span_gate": insertCreated(t, s, "evt_span_gate", now)}
	created := map[string]time.Time{
		"evt_span_old":    now.AddDate(-3, 0, 0),
		"evt_span_today":  now,
		"evt_span_later":  now.AddDate(0, 0, 3),
		"evt_span_future": now.AddDate(1, 0, 0),
	}
	for name, at := range created {
		ids[name] = insertCreated(t, s, name, at)
	}
	parts := map[string]bool{}
	for name := range created {
		parts[partitionOf(t, s, name)] = true
	}
	if len(parts) != len(created) {
		t.Fatalf("the events lie in %d partitions (%v), want %d: the test proves nothing", len(parts), parts, len(created))
	}
	ids["evt_span_missing"] = store.EventKey(now.AddDate(0, 0, 1), "evt_span_missing")
	sa := newSlowApply("", "evt_span_gate")
	a := s.NewApplier(sa.apply, store.ApplierOptions{MaxJobs: 8, Timeout: 10 * time.Second})
	defer a.Close()
	for name, r := range inOneGroup(t, ctx, a, sa, ids, store.Attempt{}) {
		want := store.Applied
		if name == "evt_span_missing" {
			want = store.Missing
		}
		if r.err != nil || r.out != want {
			t.Errorf("job of %s: %v, %v; want %v", name, r.out, r.err, want)
		}
	}
	sa.mu.Lock()
	defer sa.mu.Unlock()
	for name := range created {
		if sa.calls[name] != 1 || sa.first[name] != sa.first["evt_span_old"] {
			t.Errorf("%s applied %d times, in the old event's group %v; want once, in one group", name, sa.calls[name],
				sa.first[name] == sa.first["evt_span_old"])
		}
		checkRow(t, s, name, true, 0, "")
	}
}

// Once groups find no backlog, a job reads whether its event is done: in
// the partition of the event's day when the day has one (dayPartition names
// it as the partitions are named), else through webhook_events.
func TestApplierReadsWhetherAJobsEventIsDoneInAnyPartition(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now()
	created := map[string]time.Time{"evt_read_today": now, "evt_read_later": now.AddDate(0, 0, 2),
		"evt_read_old": now.AddDate(-3, 0, 0)}
	ids := map[string]string{}
	for name, at := range created {
		ids[name] = insertCreated(t, s, name, at)
		part, want := partitionOf(t, s, name), store.DayPartition(ids[name])
		if name == "evt_read_old" {
			want = "webhook_events_past"
		}
		if part != want {
			t.Errorf("%s is in %s; dayPartition names %s, want %s", name, part, store.DayPartition(ids[name]), want)
		}
	}
	ids["evt_read_missing_today"] = store.EventKey(now, "evt_read_missing_today")
	ids["evt_read_missing_old"] = store.EventKey(now.AddDate(-3, 0, 0), "evt_read_missing_old")
	r := newRecorder()
	a := s.NewApplier(r.apply, store.ApplierOptions{MaxJobs: 1, Ahead: 8, Timeout: 10 * time.Second, AppliedAhead: r.appliedAhead})
	defer a.Close()
	// The first job's group applies the other two ahead of theirs.
	if out, _, err := a.Process(ctx, ids["evt_read_today"], store.Attempt{}); err != nil || out != store.Applied {
		t.Fatalf("evt_read_today: %v, %v", out, err)
	}
	if !a.Quiet() {
		t.Fatal("the groups found a backlog: the jobs below would not read on their own")
	}
	for name, want := range map[string]store.Outcome{"evt_read_today": store.AlreadyProcessed, "evt_read_later": store.AlreadyProcessed,
		"evt_read_old": store.AlreadyProcessed, "evt_read_missing_today": store.Missing, "evt_read_missing_old": store.Missing} {
		if out, _, err := a.Process(ctx, ids[name], store.Attempt{}); err != nil || out != want {
			t.Errorf("%s again: %v, %v; want %v", name, out, err, want)
		}
	}
	if len(r.calls) != 3 {
		t.Errorf("applied %v, want the three stored events once each", r.calls)
	}
	// The read of an event whose day has a partition does not go through
	// webhook_events: it is answered while another transaction holds
	// webhook_events itself (not its partitions) exclusively.
	lock := s.DB().Begin()
	defer lock.Rollback()
	if err := lock.Exec("LOCK TABLE ONLY webhook_events IN ACCESS EXCLUSIVE MODE").Error; err != nil {
		t.Fatal(err)
	}
	held, cancelHeld := context.WithTimeout(ctx, 5*time.Second)
	defer cancelHeld()
	for _, name := range []string{"evt_read_today", "evt_read_later"} {
		if out, _, err := a.Process(held, ids[name], store.Attempt{}); err != nil || out != store.AlreadyProcessed {
			t.Errorf("%s with webhook_events locked: %v, %v; want already processed, read from its day's partition", name, out, err)
		}
	}
}
