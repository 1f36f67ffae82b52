package loadgen

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"stripe-webhooks/pkg/stripeevent"
	"stripe-webhooks/pkg/stripefixture"
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

// Over https, with a server that closes some connections after answering,
// every request is still sent once and answered.
func TestRunOverTLSRedialsClosedConnections(t *testing.T) {
	t.Parallel()
	v := stripeevent.NewVerifier([]string{"whsec_load"})
	var mu sync.Mutex
	answered, conns := 0, map[string]bool{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if _, err := v.Verify(b, r.Header.Get("Stripe-Signature")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		answered++
		conns[r.RemoteAddr] = true
		closeIt := answered%3 == 0
		mu.Unlock()
		if closeIt {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	tlsConfig := srv.Client().Transport.(*http.Transport).TLSClientConfig
	rep, err := Run(context.Background(), Options{URL: srv.URL + "/hook?x=1", Secret: "whsec_load", Concurrency: 2, Requests: 30, EventType: "account.updated", TLS: tlsConfig})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 30 || rep.Status["202"] != 30 || rep.Errors != 0 {
		t.Fatalf("report = %+v, want 30 requests all 202", rep)
	}
	if answered != 30 || len(conns) < 10 {
		t.Errorf("server answered %d requests on %d connections, want 30 on at least 10", answered, len(conns))
	}
}

func TestRunRefusesAnAddressItCannotSendTo(t *testing.T) {
	t.Parallel()
	if _, err := Run(context.Background(), Options{URL: "ftp://127.0.0.1/x", Secret: "s", Concurrency: 1, Requests: 1, EventType: "account.updated"}); err == nil {
		t.Fatal("ftp URL accepted")
	}
}

// The open loop sends at its rate whatever the answers take: with a server
// slower than the interval, deliveries overlap on several connections, each
// latency counts from when it was due, and every delivery is recorded.
func TestRunOpenLoopKeepsItsRateAndRecordsEachDelivery(t *testing.T) {
	t.Parallel()
	v := stripeevent.NewVerifier([]string{"whsec_load"})
	var mu sync.Mutex
	seen := map[string]bool{}
	accounts := map[string]bool{}
	inFlight, maxInFlight := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ev, err := v.Verify(b, r.Header.Get("Stripe-Signature"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var e struct {
			Account string `json:"account"`
			Data    struct {
				Object struct {
					ID string `json:"id"`
				} `json:"object"`
			} `json:"data"`
		}
		_ = json.Unmarshal(b, &e)
		mu.Lock()
		seen[ev.ID] = true
		if e.Account == e.Data.Object.ID {
			accounts[e.Account] = true
		}
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		mu.Unlock()
		time.Sleep(30 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
	}))
	defer srv.Close()
	began := time.Now()
	rep, err := Run(context.Background(), Options{URL: srv.URL, Secret: "whsec_load", Concurrency: 16, Rate: 100, Requests: 40,
		Accounts: 5, Record: true, EventType: "account.updated"})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	if rep.Requests != 40 || rep.Status["200"] != 40 || rep.Errors != 0 || rep.Rate != 100 {
		t.Fatalf("report = %+v, want 40 requests all 200 at 100/s", rep)
	}
	// 40 due over 390 ms, the last answered 30 ms later, with a few in
	// flight at once (one connection at a time would take 40 x 30 ms).
	if took < 400*time.Millisecond || took > 3*time.Second {
		t.Errorf("run took %v, want about 420ms", took)
	}
	if maxInFlight < 2 {
		t.Errorf("at most %d deliveries in flight at once, want several", maxInFlight)
	}
	if len(rep.Deliveries) != 40 || len(seen) != 40 {
		t.Fatalf("%d deliveries recorded, %d ids seen, want 40 and 40", len(rep.Deliveries), len(seen))
	}
	for _, d := range rep.Deliveries {
		if !seen[d.ID] || d.Status != 200 || d.Answered.Sub(d.Sent) < 30*time.Millisecond {
			t.Errorf("delivery %+v: want a sent id, 200, answered at least 30ms after due", d)
		}
	}
	if rep.P50Ms < 30 || rep.MaxMs > 2000 {
		t.Errorf("latency p50 %.1fms max %.1fms, want 30ms and up, under 2s", rep.P50Ms, rep.MaxMs)
	}
	if len(accounts) < 2 || len(accounts) > 5 {
		t.Errorf("deliveries went to %d accounts, want 2 to 5", len(accounts))
	}
	for a := range accounts {
		if len(a) != len(stripefixture.DefaultAccount) {
			t.Errorf("account id %q is not as long as the fixture's", a)
		}
	}
}
