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
