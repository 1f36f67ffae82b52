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
	a := s.NewApplier(apply, 1, 8, 30*time.Second)
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
