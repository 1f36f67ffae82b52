package loadgen

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"stripe-webhooks/pkg/stripeevent"
)

// A short smoke: every request is a correctly signed event with its own id,
// except the requested share of duplicates, and the report adds up.
func TestRunSendsSignedUniqueEventsAndDuplicates(t *testing.T) {
	t.Parallel()
	v := stripeevent.NewVerifier([]string{"whsec_load"})
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ev, err := v.Verify(b, r.Header.Get("Stripe-Signature"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		seen[ev.ID]++
		mu.Unlock()
	}))
	defer srv.Close()
	rep, err := Run(context.Background(), Options{URL: srv.URL, Secret: "whsec_load", Concurrency: 4, Requests: 400, Duplicates: 0.25, EventType: "account.updated"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 400 || rep.Status["200"] != 400 || rep.Errors != 0 {
		t.Fatalf("report = %+v, want 400 requests all 200", rep)
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	if dups < 40 || dups > 160 {
		t.Errorf("%d duplicates in 400 requests, want about 100", dups)
	}
	if rep.P50Ms <= 0 || rep.P99Ms < rep.P50Ms || rep.MaxMs < rep.P99Ms {
		t.Errorf("percentiles out of order: %+v", rep)
	}
}
