package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/testkit"
)

// startIngestWith runs bin/ingest on b with extra variables.
func startIngestWith(t *testing.T, b *testkit.Backend, extra map[string]string) *process {
	t.Helper()
	port := testenv.FreePort(t)
	return startProcess(t, "ingest", nil, b.Env(t, merge(extra, map[string]string{"PORT": strconv.Itoa(port)})),
		fmt.Sprintf("http://127.0.0.1:%d", port), "/healthz")
}

func chargesEnabled(t *testing.T, b *testkit.Backend, account string) bool {
	t.Helper()
	a, err := b.Store.Account(context.Background(), account)
	if err != nil {
		t.Fatalf("%s: %v", account, err)
	}
	return a.ChargesEnabled
}

func processedEvent(t *testing.T, b *testkit.Backend, eventID string) func() bool {
	return func() bool {
		row, err := b.Store.EventByStripeID(context.Background(), eventID)
		return err == nil && row.Processed
	}
}

func metricsOf(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A test-mode event delivered to a live deployment is stored (livemode
// false), answered 200 and counted, but never applied; replay skips it, and
// switching the setting to any later re-applies nothing. The same event on
// an `any` deployment is applied.
func TestTestModeEventOnLiveDeploymentIsStoredNotApplied(t *testing.T) {
	t.Parallel()
	const acct = "acct_livemode_1"
	live := map[string]string{"STRIPE_LIVEMODE": "live"}
	b := testkit.NewBackend(t)
	in := startIngestWith(t, b, live)
	startWorker(t, b, live)

	liveEvent := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: acct, Live: true,
		Created: time.Unix(1_700_000_010, 0), Mutate: testkit.Set("charges_enabled", true)})
	if code := post(t, in.Base+"/api/billing/webhooks/stripe", liveEvent); code != http.StatusOK {
		t.Fatalf("live event: %d", code)
	}
	testenv.Eventually(t, 15*time.Second, "the live event to be applied", processedEvent(t, b, testkit.EventID(liveEvent)))
	if !chargesEnabled(t, b, acct) {
		t.Fatal("the live event was not applied")
	}

	testEvent := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: acct, Live: false,
		Created: time.Unix(1_700_000_020, 0), Mutate: testkit.Set("charges_enabled", false)})
	if code := post(t, in.Base+"/api/billing/webhooks/stripe", testEvent); code != http.StatusOK {
		t.Fatalf("test-mode event on a live ingest: %d, want 200 so that Stripe stops sending it", code)
	}
	testenv.Eventually(t, 15*time.Second, "the test-mode event to be marked processed", processedEvent(t, b, testkit.EventID(testEvent)))
	row, err := b.Store.EventByStripeID(context.Background(), testkit.EventID(testEvent))
	if err != nil {
		t.Fatal(err)
	}
	if row.Livemode == nil || *row.Livemode || row.Error != nil || row.RetryCount != 0 {
		t.Errorf("test-mode row: livemode %v, error %v, retry_count %d; want false, none, 0", row.Livemode, row.Error, row.RetryCount)
	}
	if !chargesEnabled(t, b, acct) {
		t.Error("a test-mode event changed the live account")
	}
	if m := metricsOf(t, in.Base); !strings.Contains(m, `stripe_webhooks_deliveries_by_mode_total{ignored="true",mode="test"} 1`) ||
		!strings.Contains(m, `stripe_webhooks_deliveries_by_mode_total{ignored="false",mode="live"} 1`) {
		t.Errorf("deliveries by mode not counted:\n%s", grepLines(m, "by_mode"))
	}

	// Replay on a live deployment leaves it out.
	var buf bytes.Buffer
	err = run(context.Background(), []string{"worker", "replay", "--since", "1h"}, b.Env(t, live), &buf, &buf)
	if err != nil || !strings.Contains(buf.String(), "replayed 1 events, 0 failed") {
		t.Errorf("replay --since 1h = %q, %v; want the live event alone replayed", buf.String(), err)
	}
	buf.Reset()
	err = run(context.Background(), []string{"worker", "replay", "--event", testkit.EventID(testEvent)},
		b.Env(t, live), &buf, &buf)
	if err == nil || !strings.Contains(err.Error(), "never applies") {
		t.Errorf("replay --event of a test-mode event on live: %v", err)
	}
	if !chargesEnabled(t, b, acct) {
		t.Error("replay applied a test-mode event on a live deployment")
	}

	// Changing the setting re-applies nothing stored, and deletes nothing.
	startWorker(t, b, map[string]string{"STRIPE_LIVEMODE": "any"})
	testenv.Consistently(t, 2*time.Second, "the live account to stay as the live event left it", func() bool {
		return chargesEnabled(t, b, acct)
	})
	if _, err := b.Store.EventByStripeID(context.Background(), testkit.EventID(testEvent)); err != nil {
		t.Errorf("the test-mode event is gone: %v", err)
	}

	// The same event on an `any` deployment is applied.
	b2 := testkit.NewBackend(t)
	in2 := startIngestWith(t, b2, nil)
	startWorker(t, b2, nil)
	for _, p := range [][]byte{liveEvent, testEvent} {
		if code := post(t, in2.Base+"/api/billing/webhooks/stripe", p); code != http.StatusOK {
			t.Fatalf("delivery to an any ingest: %d", code)
		}
		testenv.Eventually(t, 15*time.Second, "the event to be applied", processedEvent(t, b2, testkit.EventID(p)))
	}
	if chargesEnabled(t, b2, acct) {
		t.Error("the test-mode event was not applied by an any deployment")
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
