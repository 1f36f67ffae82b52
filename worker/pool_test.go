package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gocraft/work"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/testkit"
)

// 100 events through the real ingest and the worker: all processed, rows right.
func TestHundredEventsThroughIngestAndWorker(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	port := testenv.FreePort(t)
	ingest := startProcess(t, "ingest", nil, b.Env(t, map[string]string{"PORT": strconv.Itoa(port)}),
		fmt.Sprintf("http://127.0.0.1:%d", port), "/healthz")
	startWorker(t, b, nil)
	base := time.Unix(1_750_000_000, 0)
	for a := range 10 {
		acct := fmt.Sprintf("acct_e2e_%02d", a)
		events := []stripefixture.Options{
			{Type: "account.updated", Created: base, Mutate: testkit.Set("charges_enabled", true, "payouts_enabled", a%2 == 0)},
			{Type: "capability.updated", Created: base.Add(time.Second), Mutate: testkit.Set("id", "card_payments", "status", "pending")},
			{Type: "capability.updated", Created: base.Add(time.Second), Mutate: testkit.Set("id", "tax_reporting_us_1099_k", "status", "active")},
		}
		for k := 3; k < 10; k++ {
			events = append(events, stripefixture.Options{Type: "account.external_account.created", Created: base, Card: k%2 == 0,
				Mutate: testkit.Set("id", fmt.Sprintf("ba_e2e_%02d_%d", a, k))})
		}
		for _, o := range events {
			o.Account = acct
			if code := post(t, ingest.Base+"/api/billing/webhooks/stripe", stripefixture.MustEvent(o)); code != http.StatusOK {
				t.Fatalf("ingest answered %d\n%s", code, ingest.Logs.String())
			}
		}
	}
	testenv.Eventually(t, 60*time.Second, "100 events processed", func() bool { return b.Count(t, "processed") == 100 })
	ctx := context.Background()
	for a := range 10 {
		acct := fmt.Sprintf("acct_e2e_%02d", a)
		row, err := b.Store.Account(ctx, acct)
		if err != nil {
			t.Fatalf("%s: %v", acct, err)
		}
		var caps map[string]string
		if err := json.Unmarshal(row.Capabilities, &caps); err != nil {
			t.Fatalf("%s: capabilities %q: %v", acct, row.Capabilities, err)
		}
		want := map[string]string{"card_payments": "pending", "transfers": "active", "tax_reporting_us_1099_k": "active"}
		if !row.ChargesEnabled || row.PayoutsEnabled != (a%2 == 0) || fmt.Sprint(caps) != fmt.Sprint(want) {
			t.Errorf("%s: charges %v payouts %v caps %v", acct, row.ChargesEnabled, row.PayoutsEnabled, caps)
		}
		ext, err := b.Store.ExternalAccounts(ctx, acct)
		if err != nil || len(ext) != 7 {
			t.Errorf("%s: %d external accounts (%v), want 7", acct, len(ext), err)
		}
	}
	if n := b.Count(t, "retry_count > 0 OR error IS NOT NULL"); n != 0 {
		t.Errorf("%d events failed on the way", n)
	}
}

// A poison event: retried with backoff, dead after WEBHOOK_MAX_RETRIES, then
// retried from the web UI's API through the login proxy once the cause is fixed.
func TestPoisonEventGoesDeadAndIsRetriedFromTheWebUI(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	startWorker(t, b, map[string]string{"WEBHOOK_MAX_RETRIES": "3", "WEBHOOK_RETRY_BASE_DELAY": "1s"})
	ui := startWebUI(t, b, map[string]string{"WEBUI_USERNAME": "ops", "WEBUI_PASSWORD": "s3cret"})
	auth := http.Header{"Authorization": {"Basic b3BzOnMzY3JldA=="}} // ops:s3cret
	b.Seed(t, stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_poison", Account: "acct_poison",
		Mutate: testkit.Set("charges_enabled", "yes")}))

	var dead []*work.DeadJob
	testenv.Eventually(t, 30*time.Second, "the poison job in the dead set", func() bool {
		code, body := ui.get(t, "/dead_jobs", auth)
		var page struct {
			Jobs []*work.DeadJob `json:"jobs"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &page) != nil {
			return false
		}
		dead = page.Jobs
		return len(dead) == 1
	})
	row, err := b.Store.EventByStripeID(context.Background(), "evt_poison")
	if err != nil {
		t.Fatal(err)
	}
	if row.Processed || row.RetryCount != 3 || row.Error == nil || !strings.Contains(*row.Error, "charges_enabled") || row.DeadAt == nil {
		t.Fatalf("row = processed %v, retry_count %d, error %v; want false, 3, a decoding error", row.Processed, row.RetryCount, row.Error)
	}
	if dead[0].Fails != 3 || dead[0].ArgString("event_id") != "evt_poison" {
		t.Errorf("dead job = %+v", dead[0].Job)
	}

	// The cause is fixed (here: the stored payload), then ops retry it.
	b.EditPayload(t, "evt_poison", func(e map[string]any) { testkit.DataObject(e)["charges_enabled"] = true })
	code, body := do(t, http.MethodPost, fmt.Sprintf("%s/retry_dead_job/%d/%s", ui.base, dead[0].DiedAt, dead[0].ID), auth)
	if code != http.StatusOK {
		t.Fatalf("retry through the web UI: %d %s", code, body)
	}
	testenv.Eventually(t, 30*time.Second, "the retried event to be processed", func() bool { return b.Count(t, "processed") == 1 })
	row, _ = b.Store.EventByStripeID(context.Background(), "evt_poison")
	if row.RetryCount != 3 || row.Error != nil || row.DeadAt != nil {
		t.Errorf("after the retry: retry_count %d (want 3: a retry does not reset it), error %v", row.RetryCount, row.Error)
	}
	acct, err := b.Store.Account(context.Background(), "acct_poison")
	if err != nil || !acct.ChargesEnabled {
		t.Errorf("account after the retry: %+v, %v", acct, err)
	}
}

// Two copies of one job running at once apply the event once.
func TestDuplicateJobsApplyOnce(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	ids := b.Seed(t, stripefixture.MustEvent(stripefixture.Options{Type: "capability.updated", Account: "acct_twice"}))
	row, _ := b.Store.EventByStripeID(context.Background(), ids[0])
	// Bypass the unique enqueue, as a retry or the sweeper can: a second copy.
	if _, err := work.NewEnqueuer(b.Namespace, b.Pool(t)).Enqueue("process-webhook",
		work.Q{"webhook_id": row.ID, "event_id": ids[0], "event_type": "capability.updated"}); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, b, map[string]string{"WEBHOOK_WORKER_CONCURRENCY": "5"})
	testenv.Eventually(t, 30*time.Second, "both jobs to finish", func() bool {
		_, body := w.get(t, "/metrics", nil)
		return strings.Contains(string(body), `stripe_webhooks_job_duration_seconds_count{outcome="applied"} 1`) &&
			strings.Contains(string(body), `stripe_webhooks_job_duration_seconds_count{outcome="already_processed"} 1`)
	})
	logs := w.logs.String()
	if n := strings.Count(logs, `"msg":"event processed"`); n != 1 {
		t.Errorf("applied %d times, want 1\n%s", n, logs)
	}
	code, body := w.get(t, "/metrics", nil)
	if code != http.StatusOK || !strings.Contains(string(body), `stripe_webhooks_events_processed_total{event_type="capability.updated"} 1`) {
		t.Errorf("processed counter is not 1:\n%s", grep(string(body), "stripe_webhooks_events"))
	}
}

func TestWebUILoginAndCrossSitePosts(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	ui := startWebUI(t, b, map[string]string{"WEBUI_USERNAME": "ops", "WEBUI_PASSWORD": "s3cret"})
	if code, _ := ui.get(t, "/queues", nil); code != http.StatusUnauthorized {
		t.Errorf("without credentials: %d, want 401", code)
	}
	if code, _ := ui.get(t, "/healthz", nil); code != http.StatusOK {
		t.Errorf("/healthz without credentials: %d, want 200 (for probes)", code)
	}
	bad := http.Header{"Authorization": {"Basic b3BzOndyb25n"}} // ops:wrong
	if code, _ := ui.get(t, "/queues", bad); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", code)
	}
	auth := http.Header{"Authorization": {"Basic b3BzOnMzY3JldA=="}}
	code, body := ui.get(t, "/queues", auth)
	var queues []map[string]any
	if code != http.StatusOK || json.Unmarshal(body, &queues) != nil {
		t.Errorf("queues with credentials: %d %s", code, body)
	}
	if code, body := ui.get(t, "/", auth); code != http.StatusOK || !strings.Contains(string(body), "<html") {
		t.Errorf("the UI page: %d", code)
	}
	for name, h := range map[string]http.Header{
		"Sec-Fetch-Site cross-site": {"Sec-Fetch-Site": {"cross-site"}},
		"foreign Origin":            {"Origin": {"https://evil.example"}},
	} {
		h["Authorization"] = auth["Authorization"]
		if code, _ := do(t, http.MethodPost, ui.base+"/retry_all_dead_jobs", h); code != http.StatusForbidden {
			t.Errorf("cross-site POST (%s): %d, want 403", name, code)
		}
	}
	same := http.Header{"Authorization": auth["Authorization"], "Sec-Fetch-Site": {"same-origin"}}
	if code, body := do(t, http.MethodPost, ui.base+"/retry_all_dead_jobs", same); code != http.StatusOK {
		t.Errorf("same-origin POST: %d %s", code, body)
	}
}

// SIGTERM during a drain: the worker exits 0, and a new one processes
// every remaining event; none is lost, none fails.
func TestSIGTERMDuringDrainLosesNothing(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	const n = 600
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: fmt.Sprintf("acct_drain_%03d", i)})
	}
	b.Seed(t, payloads...)
	port := testenv.FreePort(t)
	w := startProcess(t, "worker", nil, b.Env(t, map[string]string{
		"WORKER_HTTP_PORT": strconv.Itoa(port), "WEBHOOK_WORKER_CONCURRENCY": "2",
	}), fmt.Sprintf("http://127.0.0.1:%d", port), "/healthz")
	testenv.Eventually(t, 30*time.Second, "the drain to start", func() bool { return b.Count(t, "processed") >= 30 })
	if err := w.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Done:
	case <-time.After(40 * time.Second):
		t.Fatal("worker did not exit within 40s of SIGTERM")
	}
	if code := w.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0\n%s", code, w.Logs.String())
	}
	first := b.Count(t, "processed")
	t.Logf("processed before SIGTERM took effect: %d of %d", first, n)
	startWorker(t, b, nil)
	testenv.Eventually(t, 60*time.Second, "every event processed after restart", func() bool { return b.Count(t, "processed") == n })
	if failed := b.Count(t, "retry_count > 0"); failed != 0 {
		t.Errorf("%d events failed", failed)
	}
	var accounts int64
	b.Store.DB().Model(&store.ConnectedAccount{}).Count(&accounts)
	if accounts != n {
		t.Errorf("%d accounts, want %d", accounts, n)
	}
}

// The sweeper leaves an event waiting for its retry alone: backoff stays backoff.
func TestSweeperDoesNotRunARetryEarly(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	w := startWorker(t, b, merge(fastSweep, map[string]string{"WEBHOOK_RETRY_BASE_DELAY": "1h"}))
	b.Seed(t, stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_backoff", Mutate: testkit.Set("charges_enabled", "yes")}))
	testenv.Eventually(t, 30*time.Second, "the first attempt to fail", func() bool { return b.Count(t, "retry_count = 1") == 1 })
	row, _ := b.Store.EventByStripeID(context.Background(), "evt_backoff")
	if row.NextAttemptAt == nil || time.Until(*row.NextAttemptAt) < 50*time.Minute {
		t.Fatalf("next_attempt_at = %v, want about an hour from now", row.NextAttemptAt)
	}
	sweeps := func() int {
		_, body := w.get(t, "/metrics", nil)
		for _, l := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(l, "stripe_webhooks_sweeps_total "); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
		return 0
	}
	before := sweeps()
	testenv.Consistently(t, 4*time.Second, "one attempt only", func() bool { return b.Count(t, "retry_count = 1") == 1 })
	if after := sweeps(); after < before+3 {
		t.Fatalf("the sweeper ran %d times in 4s; the check proves nothing", after-before)
	}
}

func TestWorkerReadyzNeedsBothBackends(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	rd := testenv.StartRedis(t)
	b.RedisAddr = rd.Addr()
	w := startWorker(t, b, nil)
	if code, _ := w.get(t, "/readyz", nil); code != http.StatusOK {
		t.Errorf("/readyz with both up: %d", code)
	}
	rd.Stop()
	if code, body := w.get(t, "/readyz", nil); code != http.StatusServiceUnavailable || !strings.Contains(string(body), `"redis":"down"`) {
		t.Errorf("/readyz with Redis down: %d %s", code, body)
	}
	rd.Start()
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
