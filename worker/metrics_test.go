package main

import (
	"bytes"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/testkit"
)

// After a small run, each service's /metrics carries every series the
// dashboards and alerts use.
func TestMetricsAfterASmallRun(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	ingest := startIngest(t, b)
	w := startWorker(t, b, merge(fastSweep, map[string]string{"WEBHOOK_MAX_RETRIES": "1"}))
	url := ingest.Base + "/api/billing/webhooks/stripe"
	good := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
	poison := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Mutate: testkit.Set("charges_enabled", "yes")})
	for _, p := range [][]byte{good, good, poison} {
		if code := post(t, url, p); code != http.StatusOK {
			t.Fatalf("delivery answered %d", code)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(good))
	req.Header.Set("Stripe-Signature", stripefixture.Sign(good, "whsec_not_ours", time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("badly signed delivery answered %d", resp.StatusCode)
	}
	testenv.Eventually(t, 30*time.Second, "the deliveries to settle", func() bool {
		return b.Count(t, "processed") == 1 && b.Count(t, "dead_at IS NOT NULL") == 1
	})
	// An event stored but not queued, for the sweeper. (Stored while jobs
	// still ran, a group could apply it ahead of the sweep.)
	lost := stripefixture.MustEvent(stripefixture.Options{Type: "capability.updated"})
	b.StoreOnly(t, lost)
	testenv.Eventually(t, 30*time.Second, "the sweeper to queue it and the worker to apply it", func() bool {
		return b.Count(t, "processed") == 2
	})

	scrape := func(base string) string {
		code, body := do(t, http.MethodGet, base+"/metrics", nil)
		if code != http.StatusOK {
			t.Fatalf("%s/metrics: %d", base, code)
		}
		return string(body)
	}
	ingestWant := []string{
		`stripe_webhooks_deliveries_total{outcome="stored",reason=""} 2`,
		`stripe_webhooks_deliveries_total{outcome="duplicate",reason=""} 1`,
		`stripe_webhooks_deliveries_total{outcome="rejected",reason="bad_signature"} 1`,
		`stripe_webhooks_enqueue_failures_total 0`,
		`stripe_webhooks_store_duration_seconds_count 3`,
		`stripe_webhooks_enqueue_duration_seconds_count 3`,
		`stripe_webhooks_backend_up{backend="postgres"} 1`,
		`stripe_webhooks_backend_up{backend="redis"} 1`,
	}
	checkSeries(t, "ingest", scrape(ingest.Base), ingestWant)
	testenv.Eventually(t, 10*time.Second, "the dead set gauge", func() bool {
		return strings.Contains(scrape(w.base), "stripe_webhooks_dead_jobs 1")
	})
	workerWant := []string{
		`stripe_webhooks_events_processed_total{event_type="account.updated"} 1`,
		`stripe_webhooks_events_processed_total{event_type="capability.updated"} 1`,
		`stripe_webhooks_events_failed_total{event_type="account.updated"} 1`,
		`stripe_webhooks_job_duration_seconds_count{outcome="applied"} 2`,
		`stripe_webhooks_job_duration_seconds_count{outcome="failed"} 1`,
		`stripe_webhooks_queue_depth 0`,
		`stripe_webhooks_retry_jobs 0`,
		`stripe_webhooks_dead_jobs 1`,
		`stripe_webhooks_unprocessed_events 1`,
		`stripe_webhooks_worker_pools_alive 1`,
		`stripe_webhooks_sweeper_enqueued_total 1`,
		`stripe_webhooks_reconcile_skipped_accounts_total 0`,
		`stripe_webhooks_backend_up{backend="postgres"} 1`,
		`stripe_webhooks_backend_up{backend="redis"} 1`,
	}
	checkSeries(t, "worker", scrape(w.base), workerWant)
	if !regexp.MustCompile(`(?m)^stripe_webhooks_sweeps_total [1-9]`).MatchString(scrape(w.base)) {
		t.Error("worker: no completed sweep counted")
	}
}

func checkSeries(t *testing.T, service, body string, want []string) {
	t.Helper()
	for _, series := range want {
		if !strings.Contains(body, series+"\n") {
			t.Errorf("%s /metrics lacks %s\n%s", service, series, grep(body, strings.SplitN(series, "{", 2)[0]))
		}
	}
}
