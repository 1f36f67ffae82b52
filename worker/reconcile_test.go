package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/handler"
)

const fakeKey = "rk_test_reconcile_secret_0123456789"

// runCommand runs `worker <args…>` in-process with env and returns its output.
func runCommand(t *testing.T, environ []string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"worker"}, args...), environ, &out, &out)
	return out.String(), err
}

// storeDelivered stores payloads as the ingest would have, and marks them
// processed: the events Stripe did deliver.
func storeDelivered(t *testing.T, b *backend, payloads [][]byte) {
	t.Helper()
	in, err := b.store.NewInserter(store.InserterOptions{Flushers: 2, MaxBatch: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var wg sync.WaitGroup
	work := make(chan []byte)
	for range 16 {
		wg.Go(func() {
			for p := range work {
				if _, err := in.Insert(context.Background(), store.NewEvent{StripeEventID: eventIDOf(p), EventType: "account.updated",
					Payload: p, ReceivedAt: time.Now()}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for _, p := range payloads {
		work <- p
	}
	close(work)
	wg.Wait()
	if err := b.store.DB().Exec("UPDATE webhook_events SET processed = true, processed_at = now()").Error; err != nil {
		t.Fatal(err)
	}
}

// Reconcile against a scripted Stripe with 200 connected accounts and 5,000
// events, 300 of them never delivered: each missing event is stored once,
// queued and applied once by the worker; delivered ones are not stored
// again; events older than the window are left; a 429 is retried; an
// account answering 500 fails alone and the run says so; a delivery racing
// the reconcile leaves one row; the key appears in no log line; a rerun
// picks up the failed account and finds nothing else missing.
func TestReconcileStoresWhatStripeNeverDelivered(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	w := startWorker(t, b, nil)
	in := startIngestWith(t, b, nil)
	fake := newFakeStripe(t, fakeKey)
	now := time.Now()

	const accounts, perAccount = 200, 25
	var delivered [][]byte
	missing := map[string]string{} // event id -> account
	var race []byte                // a missing event Stripe delivers during the run
	for a := range accounts {
		acct := fmt.Sprintf("acct_rec_%03d", a)
		fake.accounts = append(fake.accounts, acct)
		for e := range perAccount {
			typ := "account.updated"
			if e%2 == 1 {
				typ = "capability.updated"
			}
			p := stripefixture.MustEvent(stripefixture.Options{Type: typ, Account: acct,
				Created: now.Add(-time.Duration(48*60-a*13-e) * time.Minute)})
			fake.addEvent(acct, p)
			if n := a*perAccount + e; n%50 == 7 || n%50 == 31 || n%50 == 44 { // 300 of 5,000
				missing[eventIDOf(p)] = acct
				if race == nil && a == 5 {
					race = p
				}
				continue
			}
			delivered = append(delivered, p)
		}
	}
	// Never delivered but older than the window: left alone.
	old := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_rec_010", Created: now.Add(-80 * time.Hour)})
	fake.addEvent("acct_rec_010", old)
	// Of the wrong type for the worker: never asked for.
	fake.addEvent("acct_rec_011", stripefixture.MustEvent(stripefixture.Options{Type: "plan.created", Account: "acct_rec_011"}))
	storeDelivered(t, b, delivered)
	fake.failAccount("acct_rec_000", http.StatusTooManyRequests, 2)
	fake.failAccount("acct_rec_001", http.StatusInternalServerError, 0)

	env := b.env(t, map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL})
	go func() { // the race: Stripe delivers one missing event while reconcile runs
		if code := postNoFail(in.Base+"/api/billing/webhooks/stripe", race); code != http.StatusOK {
			t.Errorf("racing delivery: %d", code)
		}
	}()
	began := time.Now()
	out, err := runCommand(t, env, "reconcile", "--since", "72h")
	took := time.Since(began)
	if err == nil || !errors.Is(err, errAccountsFailed) || !strings.Contains(out, "acct_rec_001") {
		t.Fatalf("reconcile with one account failing: %v\n%s", err, lastLines(out, 5))
	}
	failedMissing := 0
	for _, acct := range missing {
		if acct == "acct_rec_001" {
			failedMissing++
		}
	}
	// The racing event is stored by whichever of the delivery and the
	// reconcile comes first; the summary counts it only in the second case.
	wantA := fmt.Sprintf("accounts %d, events listed %d, missing %d stored", accounts+1, (accounts-1)*perAccount, len(missing)-failedMissing)
	wantB := fmt.Sprintf("accounts %d, events listed %d, missing %d stored", accounts+1, (accounts-1)*perAccount, len(missing)-failedMissing-1)
	if !strings.Contains(out, wantA) && !strings.Contains(out, wantB) {
		t.Errorf("summary: want %q (or one fewer stored)\n%s", wantA, lastLines(out, 5))
	}
	t.Logf("reconcile of %d accounts, %d events, %d never delivered: %s in %s, %d API calls",
		accounts, accounts*perAccount, len(missing), strings.TrimSpace(firstLine(out, "accounts ")), took.Round(time.Millisecond), fake.calls.Load())

	// Every missing event of the listed accounts: one row, applied once.
	for id, acct := range missing {
		if acct == "acct_rec_001" {
			continue
		}
		testenv.Eventually(t, 30*time.Second, "missing event "+id+" to be applied", processedEvent(t, b, id))
	}
	var rows int64
	b.store.DB().Raw("SELECT count(*) FROM webhook_events").Scan(&rows)
	if want := int64(len(delivered) + len(missing) - failedMissing); rows != want {
		t.Errorf("%d rows, want %d (each event once)", rows, want)
	}
	if _, err := b.store.EventByStripeID(context.Background(), eventIDOf(old)); err == nil {
		t.Error("an event older than the window was stored")
	}
	// The worker logs each event after its commit: wait for the last lines.
	var applied map[string]int
	testenv.Eventually(t, 10*time.Second, "an \"event processed\" line for each missing event", func() bool {
		applied = appliedCounts(w.logs.String())
		for id, acct := range missing {
			if acct != "acct_rec_001" && applied[id] == 0 {
				return false
			}
		}
		return true
	})
	for id, acct := range missing {
		if acct != "acct_rec_001" && applied[id] != 1 {
			t.Errorf("missing event %s applied %d times, want once", id, applied[id])
		}
	}
	for _, logs := range []string{out, w.logs.String()} {
		if strings.Contains(logs, fakeKey) {
			t.Error("the API key appears in the logs")
		}
	}

	// Rerun with the failing account answering again: its events are
	// stored; nothing else is missing any more.
	fake.heal("acct_rec_001")
	out, err = runCommand(t, env, "reconcile", "--since", "72h")
	if want := fmt.Sprintf("missing %d stored", failedMissing); err != nil || !strings.Contains(out, want) {
		t.Errorf("rerun: %v, want %q\n%s", err, want, lastLines(out, 5))
	}
}

// A Stripe that refuses the key: the run fails, and no line of its output
// holds the key.
func TestReconcileNeverLogsTheKey(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	fake := newFakeStripe(t, "rk_test_the_right_one")
	env := b.env(t, map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL})
	out, err := runCommand(t, env, "reconcile", "--account", "acct_nokey")
	if err == nil {
		t.Fatal("reconcile with a refused key succeeded")
	}
	for _, s := range []string{out, err.Error()} {
		if strings.Contains(s, fakeKey) || strings.Contains(s, "reconcile_secret") {
			t.Errorf("the key appears in %q", s)
		}
	}
	if !strings.Contains(out+err.Error(), "401") {
		t.Errorf("the failure does not say 401: %v\n%s", err, out)
	}
}

// applyNow stores and applies one event as the worker would.
func applyNow(t *testing.T, b *backend, p []byte) {
	t.Helper()
	row, err := b.store.InsertEvent(context.Background(), store.NewEvent{StripeEventID: eventIDOf(p), EventType: typeOf(p),
		Payload: p, ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if out, _, err := b.store.ProcessEvent(context.Background(), row.WebhookID, store.Attempt{}, handler.Apply); err != nil || out != store.Applied {
		t.Fatalf("apply %s: %v %v", eventIDOf(p), out, err)
	}
}

func typeOf(p []byte) string {
	var e struct{ Type string }
	_ = json.Unmarshal(p, &e)
	return e.Type
}

// Resync restores a drifted account from Stripe's state, marks a bank
// account Stripe no longer has deleted, and keeps a capability a newer
// event wrote.
func TestResyncRestoresADriftedAccount(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	const acct = "acct_resync_1"
	now := time.Now()
	applyNow(t, b, stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: acct, Created: now.Add(-time.Hour),
		Mutate: set("id", acct, "charges_enabled", false, "capabilities", map[string]any{"card_payments": "pending", "transfers": "pending"})}))
	// A capability event newer than the fetch (Stripe's clock ahead of it).
	applyNow(t, b, stripefixture.MustEvent(stripefixture.Options{Type: "capability.updated", Account: acct, Created: now.Add(time.Hour),
		Mutate: set("id", "card_payments", "account", acct, "status", "active")}))
	for _, ba := range []string{"ba_resync_keep", "ba_resync_gone"} {
		applyNow(t, b, stripefixture.MustEvent(stripefixture.Options{Type: "account.external_account.created", Account: acct,
			Created: now.Add(-time.Hour), Mutate: set("id", ba, "account", acct)}))
	}
	fake := newFakeStripe(t, fakeKey)
	fake.objects[acct] = json.RawMessage(fmt.Sprintf(`{"id":%q,"object":"account","charges_enabled":true,"payouts_enabled":true,
		"details_submitted":true,"capabilities":{"card_payments":"inactive","transfers":"active"},"requirements":{"currently_due":[]}}`, acct))
	fake.external[acct] = []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"id":"ba_resync_keep","object":"bank_account","account":%q,
		"last4":"6789","bank_name":"STRIPE TEST BANK","currency":"usd","status":"verified","default_for_currency":true}`, acct))}
	env := b.env(t, map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL})

	out, err := runCommand(t, env, "resync", "--account", acct)
	if err != nil || !strings.Contains(out, "accounts 1, resynced 1, drifted 1, failed 0") {
		t.Fatalf("resync: %v\n%s", err, lastLines(out, 5))
	}
	a, err := b.store.Account(context.Background(), acct)
	if err != nil {
		t.Fatal(err)
	}
	var caps map[string]string
	if err := json.Unmarshal(a.Capabilities, &caps); err != nil {
		t.Fatal(err)
	}
	if !a.ChargesEnabled || caps["transfers"] != "active" {
		t.Errorf("drift not restored: charges %v, capabilities %v", a.ChargesEnabled, caps)
	}
	if caps["card_payments"] != "active" {
		t.Errorf("card_payments = %s, want active: a newer event wrote it", caps["card_payments"])
	}
	ext, err := b.store.ExternalAccounts(context.Background(), acct)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ext {
		switch e.StripeExternalAccountID {
		case "ba_resync_keep":
			if e.DeletedAt != nil || str(e.Status) != "verified" {
				t.Errorf("kept bank account: deleted %v, status %s", e.DeletedAt, str(e.Status))
			}
		case "ba_resync_gone":
			if e.DeletedAt == nil {
				t.Error("a bank account Stripe no longer has is not marked deleted")
			}
		}
	}
	// Nothing drifted any more.
	out, err = runCommand(t, env, "resync", "--all")
	if err != nil || !strings.Contains(out, "resynced 0, drifted 0") {
		// --all lists GET /v1/accounts, which lists none here.
		t.Errorf("resync --all: %v\n%s", err, lastLines(out, 3))
	}
}

func str(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func firstLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// With STRIPE_API_KEY set, the worker reconciles by itself every
// STRIPE_RECONCILE_INTERVAL: an event Stripe never delivered, created a
// little over five minutes ago (older than a delivery in flight), is stored
// and applied without anyone running the command, its account is resynced,
// and the run is counted.
func TestPeriodicReconcileStoresMissingEvents(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	fake := newFakeStripe(t, fakeKey)
	const acct = "acct_periodic_1"
	fake.accounts = []string{acct}
	p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: acct,
		Created: time.Now().Add(-deliverySettle - time.Second), Mutate: set("id", acct, "charges_enabled", true)})
	fake.addEvent(acct, p)
	// The account as Stripe has it now, for the resync that follows a
	// missing event.
	fake.objects[acct] = json.RawMessage(fmt.Sprintf(`{"id":%q,"object":"account","charges_enabled":true,"payouts_enabled":true,
		"details_submitted":true,"capabilities":{"card_payments":"active"},"requirements":{"currently_due":[]}}`, acct))
	w := startWorker(t, b, map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL,
		"STRIPE_RECONCILE_INTERVAL": "2s"})
	testenv.Eventually(t, 20*time.Second, "the missing event to be stored and applied", processedEvent(t, b, eventIDOf(p)))
	if !chargesEnabled(t, b, acct) {
		t.Error("the missing event was not applied")
	}
	testenv.Eventually(t, 10*time.Second, "the run to be counted", func() bool {
		m := metricsOf(t, w.base)
		return strings.Contains(m, `stripe_webhooks_reconcile_missing_events_total{event_type="account.updated"} 1`) &&
			strings.Contains(m, "stripe_webhooks_resynced_accounts_total 1") &&
			!strings.Contains(m, `stripe_webhooks_reconcile_runs_total{outcome="ok"} 0`) &&
			!strings.Contains(m, "stripe_webhooks_reconcile_last_success_timestamp_seconds 0")
	})
	if strings.Contains(w.logs.String(), fakeKey) {
		t.Error("the API key appears in the worker's logs")
	}
}
