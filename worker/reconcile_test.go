package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/handler"
	"stripe-webhooks/worker/internal/testkit"
	"stripe-webhooks/worker/reconcile"
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
func storeDelivered(t *testing.T, b *testkit.Backend, payloads [][]byte) {
	t.Helper()
	in, err := b.Store.NewInserter(store.InserterOptions{Batches: 2, MaxBatch: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var wg sync.WaitGroup
	work := make(chan []byte)
	for range 16 {
		wg.Go(func() {
			for p := range work {
				if _, err := in.Insert(context.Background(), store.NewEvent{StripeEventID: testkit.EventID(p), EventType: "account.updated",
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
	if err := b.Store.DB().Exec("UPDATE webhook_events SET processed = true, processed_at = now()").Error; err != nil {
		t.Fatal(err)
	}
	b.SyncPending(t)
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
	b := testkit.NewBackend(t)
	w := startWorker(t, b, nil)
	in := startIngestWith(t, b, nil)
	fake := newFakeStripe(t, fakeKey)
	sc := scriptReconcile(fake, time.Now())
	storeDelivered(t, b, sc.delivered)
	fake.failAccount("acct_rec_000", http.StatusTooManyRequests, 2)
	fake.failAccount("acct_rec_001", http.StatusInternalServerError, 0)

	env := b.Env(t, map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL})
	go func() { // the race: Stripe delivers one missing event while reconcile runs
		if code := postNoFail(in.Base+"/api/billing/webhooks/stripe", sc.race); code != http.StatusOK {
			t.Errorf("racing delivery: %d", code)
		}
	}()
	began := time.Now()
	out, err := runCommand(t, env, "reconcile", "--since", "72h")
	took := time.Since(began)
	if err == nil || !errors.Is(err, reconcile.ErrAccountsFailed) || !strings.Contains(out, "acct_rec_001") {
		t.Fatalf("reconcile with one account failing: %v\n%s", err, lastLines(out, 5))
	}
	failedMissing := 0
	for _, acct := range sc.missing {
		if acct == "acct_rec_001" {
			failedMissing++
		}
	}
	// The racing event is stored by whichever of the delivery and the
	// reconcile comes first; the summary counts it only in the second case.
	listed := (recAccounts - 1) * recPerAccount
	wantA := fmt.Sprintf("accounts %d, events listed %d, missing %d stored", recAccounts+1, listed, len(sc.missing)-failedMissing)
	wantB := fmt.Sprintf("accounts %d, events listed %d, missing %d stored", recAccounts+1, listed, len(sc.missing)-failedMissing-1)
	if !strings.Contains(out, wantA) && !strings.Contains(out, wantB) {
		t.Errorf("summary: want %q (or one fewer stored)\n%s", wantA, lastLines(out, 5))
	}
	t.Logf("reconcile of %d accounts, %d events, %d never delivered: %s in %s, %d API calls", recAccounts,
		recAccounts*recPerAccount, len(sc.missing), strings.TrimSpace(firstLine(out, "accounts ")), took.Round(time.Millisecond), fake.calls.Load())
	checkMissingAppliedOnce(t, b, w, sc, failedMissing)
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

// The scripted Stripe of TestReconcileStoresWhatStripeNeverDelivered:
// recAccounts accounts of recPerAccount events each.
const recAccounts, recPerAccount = 200, 25

// reconcileScript is what scriptReconcile listed in the fake Stripe.
type reconcileScript struct {
	delivered [][]byte
	missing   map[string]string // event id -> account, never delivered
	race      []byte            // a missing event Stripe delivers during the run
	old       []byte            // never delivered but older than the window
}

// scriptReconcile lists 5,000 events over 200 accounts in fake, 300 of them
// never delivered, plus one older than the window and one of a type the
// worker does not handle (never asked for).
func scriptReconcile(fake *fakeStripe, now time.Time) reconcileScript {
	sc := reconcileScript{missing: map[string]string{}}
	for a := range recAccounts {
		acct := fmt.Sprintf("acct_rec_%03d", a)
		fake.accounts = append(fake.accounts, acct)
		for e := range recPerAccount {
			typ := "account.updated"
			if e%2 == 1 {
				typ = "capability.updated"
			}
			p := stripefixture.MustEvent(stripefixture.Options{Type: typ, Account: acct,
				Created: now.Add(-time.Duration(48*60-a*13-e) * time.Minute)})
			fake.addEvent(acct, p)
			if n := a*recPerAccount + e; n%50 == 7 || n%50 == 31 || n%50 == 44 { // 300 of 5,000
				sc.missing[testkit.EventID(p)] = acct
				if sc.race == nil && a == 5 {
					sc.race = p
				}
				continue
			}
			sc.delivered = append(sc.delivered, p)
		}
	}
	sc.old = stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_rec_010", Created: now.Add(-80 * time.Hour)})
	fake.addEvent("acct_rec_010", sc.old)
	fake.addEvent("acct_rec_011", stripefixture.MustEvent(stripefixture.Options{Type: "plan.created", Account: "acct_rec_011"}))
	return sc
}

// checkMissingAppliedOnce: every missing event of the listed accounts has
// one row, applied once; nothing older than the window was stored.
func checkMissingAppliedOnce(t *testing.T, b *testkit.Backend, w *service, sc reconcileScript, failedMissing int) {
	t.Helper()
	for id, acct := range sc.missing {
		if acct == "acct_rec_001" {
			continue
		}
		testenv.Eventually(t, 30*time.Second, "missing event "+id+" to be applied", processedEvent(t, b, id))
	}
	var rows int64
	b.Store.DB().Raw("SELECT count(*) FROM webhook_events").Scan(&rows)
	if want := int64(len(sc.delivered) + len(sc.missing) - failedMissing); rows != want {
		t.Errorf("%d rows, want %d (each event once)", rows, want)
	}
	if _, err := b.Store.EventByStripeID(context.Background(), testkit.EventID(sc.old)); err == nil {
		t.Error("an event older than the window was stored")
	}
	// The worker logs each event after its commit: wait for the last lines.
	var applied map[string]int
	testenv.Eventually(t, 10*time.Second, "an \"event processed\" line for each missing event", func() bool {
		applied = appliedCounts(w.logs.String())
		for id, acct := range sc.missing {
			if acct != "acct_rec_001" && applied[id] == 0 {
				return false
			}
		}
		return true
	})
	for id, acct := range sc.missing {
		if acct != "acct_rec_001" && applied[id] != 1 {
			t.Errorf("missing event %s applied %d times, want once", id, applied[id])
		}
	}
}

// A Stripe that refuses the key: the run fails, and no line of its output
// holds the key.
func TestReconcileNeverLogsTheKey(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	fake := newFakeStripe(t, "rk_test_the_right_one")
	env := b.Env(t, map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL})
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
func applyNow(t *testing.T, b *testkit.Backend, p []byte) {
	t.Helper()
	row, err := b.Store.InsertEvent(context.Background(), store.NewEvent{StripeEventID: testkit.EventID(p), EventType: typeOf(p),
		Payload: p, ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if out, _, err := b.Store.ProcessEvent(context.Background(), row.WebhookID, store.Attempt{}, handler.Apply); err != nil || out != store.Applied {
		t.Fatalf("apply %s: %v %v", testkit.EventID(p), out, err)
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
	b := testkit.NewBackend(t)
	const acct = "acct_resync_1"
	now := time.Now()
	applyNow(t, b, stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: acct, Created: now.Add(-time.Hour),
		Mutate: testkit.Set("id", acct, "charges_enabled", false, "capabilities", map[string]any{"card_payments": "pending", "transfers": "pending"})}))
	// A capability event newer than the fetch (Stripe's clock ahead of it).
	applyNow(t, b, stripefixture.MustEvent(stripefixture.Options{Type: "capability.updated", Account: acct, Created: now.Add(time.Hour),
		Mutate: testkit.Set("id", "card_payments", "account", acct, "status", "active")}))
	for _, ba := range []string{"ba_resync_keep", "ba_resync_gone"} {
		applyNow(t, b, stripefixture.MustEvent(stripefixture.Options{Type: "account.external_account.created", Account: acct,
			Created: now.Add(-time.Hour), Mutate: testkit.Set("id", ba, "account", acct)}))
	}
	fake := newFakeStripe(t, fakeKey)
	fake.objects[acct] = json.RawMessage(fmt.Sprintf(`{"id":%q,"object":"account","charges_enabled":true,"payouts_enabled":true,
		"details_submitted":true,"capabilities":{"card_payments":"inactive","transfers":"active"},"requirements":{"currently_due":[]}}`, acct))
	fake.external[acct] = []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"id":"ba_resync_keep","object":"bank_account","account":%q,
		"last4":"6789","bank_name":"STRIPE TEST BANK","currency":"usd","status":"verified","default_for_currency":true}`, acct))}
	env := b.Env(t, map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL})

	out, err := runCommand(t, env, "resync", "--account", acct)
	if err != nil || !strings.Contains(out, "accounts 1, resynced 1, drifted 1, failed 0") {
		t.Fatalf("resync: %v\n%s", err, lastLines(out, 5))
	}
	a, err := b.Store.Account(context.Background(), acct)
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
	ext, err := b.Store.ExternalAccounts(context.Background(), acct)
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
	b := testkit.NewBackend(t)
	fake := newFakeStripe(t, fakeKey)
	const acct = "acct_periodic_1"
	fake.accounts = []string{acct}
	p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: acct,
		Created: time.Now().Add(-reconcile.DeliverySettle - time.Second), Mutate: testkit.Set("id", acct, "charges_enabled", true)})
	fake.addEvent(acct, p)
	// The account as Stripe has it now, for the resync that follows a
	// missing event.
	fake.objects[acct] = json.RawMessage(fmt.Sprintf(`{"id":%q,"object":"account","charges_enabled":true,"payouts_enabled":true,
		"details_submitted":true,"capabilities":{"card_payments":"active"},"requirements":{"currently_due":[]}}`, acct))
	w := startWorker(t, b, map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL,
		"STRIPE_RECONCILE_INTERVAL": "2s"})
	testenv.Eventually(t, 20*time.Second, "the missing event to be stored and applied", processedEvent(t, b, testkit.EventID(p)))
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

// accountObject is a connected account as GET /v1/accounts/{id} answers,
// for the resync that follows missing events.
func accountObject(acct string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"id":%q,"object":"account","charges_enabled":true,"payouts_enabled":true,
		"details_submitted":true,"capabilities":{"card_payments":"active"},"requirements":{"currently_due":[]}}`, acct))
}

// seriesValue is the value of one series (name with its labels) in a
// /metrics body, and whether the body has it.
func seriesValue(body, series string) (float64, bool) {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// Fault 4: a connected account that deauthorized the platform is skipped,
// not failed. One whose row says so and that Stripe's list no longer names
// costs no request; one Stripe's list still names, or names alone, and
// that Stripe refuses as revoked (403 account_invalid, or 401 with Stripe's
// message) is counted skipped. The command exits 0, and the periodic run
// is ok and counts them.
func TestReconcileSkipsDeauthorizedAccounts(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	fake := newFakeStripe(t, fakeKey)
	const (
		gone       = "acct_deauth_row"    // deauthorized by its row, no longer listed
		listedGone = "acct_deauth_listed" // deauthorized by its row, still listed
		revoked    = "acct_revoked_only"  // listed only, refused
		healthy    = "acct_still_here"
	)
	for _, acct := range []string{gone, listedGone} {
		applyNow(t, b, stripefixture.MustEvent(stripefixture.Options{Type: "account.application.deauthorized", Account: acct,
			Created: time.Now().Add(-2 * time.Hour)}))
	}
	fake.revokeAccount(gone, http.StatusForbidden)
	fake.revokeAccount(listedGone, http.StatusForbidden)
	fake.revokeAccount(revoked, http.StatusUnauthorized)
	fake.accounts = []string{listedGone, revoked, healthy}
	missed := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: healthy, Created: time.Now().Add(-time.Hour),
		Mutate: testkit.Set("id", healthy, "charges_enabled", true)})
	fake.addEvent(healthy, missed)
	fake.objects[healthy] = accountObject(healthy)
	env := b.Env(t, map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL})

	out, err := runCommand(t, env, "reconcile", "--since", "72h")
	if want := "accounts 5, events listed 1, missing 1 stored, skipped 3"; err != nil || !strings.Contains(out, want) {
		t.Fatalf("reconcile with deauthorized accounts: %v, want exit 0 and %q\n%s", err, want, lastLines(out, 5))
	}
	if strings.Contains(out, "could not reconcile") {
		t.Errorf("a deauthorized account is reported as failed:\n%s", grepLines(out, "could not reconcile"))
	}
	for _, r := range fake.requested() {
		if r.account == gone {
			t.Errorf("a request for %s, deauthorized and no longer listed: %s", gone, r.path)
		}
	}
	if _, err := b.Store.EventByStripeID(context.Background(), testkit.EventID(missed)); err != nil {
		t.Errorf("the missing event of the account still connected was not stored: %v", err)
	}

	w := startWorker(t, b, map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL,
		"STRIPE_RECONCILE_INTERVAL": "2s"})
	testenv.Eventually(t, 20*time.Second, "a periodic run to be counted", func() bool {
		m := metricsOf(t, w.base)
		ok, _ := seriesValue(m, `stripe_webhooks_reconcile_runs_total{outcome="ok"}`)
		failed, _ := seriesValue(m, `stripe_webhooks_reconcile_runs_total{outcome="failed"}`)
		return ok+failed >= 1
	})
	m := metricsOf(t, w.base)
	if failed, ok := seriesValue(m, `stripe_webhooks_reconcile_runs_total{outcome="failed"}`); !ok || failed != 0 {
		t.Errorf("failed periodic runs: %v, want 0\n%s", failed, grep(m, "reconcile"))
	}
	if skipped, _ := seriesValue(m, "stripe_webhooks_reconcile_skipped_accounts_total"); skipped < 3 {
		t.Errorf("skipped accounts counted: %v, want at least 3 (one run)\n%s", skipped, grep(m, "reconcile"))
	}
}

// Fault 5: a periodic run that runs out of time stops between accounts
// and counts ok; the next run takes the accounts not reached yet first
// (never reconciled, then least recently), so no account is listed twice
// before every one has been listed once, and every account is reached
// within ceil(N / C) runs, C being the accounts a run reaches. The
// accounts only Stripe's list names, at its end, are reached too.
func TestPeriodicReconcileResumesWhereItStopped(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	fake := newFakeStripe(t, fakeKey)
	const n = 60 // connected accounts, only Stripe's list names them
	for i := range n {
		fake.accounts = append(fake.accounts, fmt.Sprintf("acct_tail_%03d", i))
	}
	last := fake.accounts[n-1]
	missed := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: last, Created: time.Now().Add(-time.Hour),
		Mutate: testkit.Set("id", last, "charges_enabled", true)})
	fake.addEvent(last, missed)
	fake.objects[last] = accountObject(last)
	// 10 requests/s and runs of at most 3.2 s: about 28 accounts a run.
	w := startWorker(t, b, map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL,
		"STRIPE_RECONCILE_INTERVAL": "4s", "STRIPE_API_RATE": "10"})
	testenv.Eventually(t, 60*time.Second, "the missing event of the last account to be stored and applied", processedEvent(t, b, testkit.EventID(missed)))

	// Each run lists the accounts once, then the events of each account.
	run, reached := 0, map[string]int{} // account -> the run that first listed its events
	var perRun []int                    // accounts first reached, by run
	for _, r := range fake.requested() {
		switch {
		case r.path == "accounts":
			run++
			perRun = append(perRun, 0)
		case r.path == "events" && len(reached) < n+1:
			if first, seen := reached[r.account]; seen {
				t.Errorf("%q listed again in run %d (first in run %d) before every account was listed once", r.account, run, first)
				continue
			}
			reached[r.account] = run
			perRun[run-1]++
		}
	}
	if len(reached) != n+1 {
		t.Fatalf("%d accounts reached, want %d (the platform and %d connected accounts)", len(reached), n+1, n)
	}
	runs := slices.Max(slices.Collect(maps.Values(reached)))
	t.Logf("every one of %d accounts reached in %d runs; accounts first reached by run: %v", n+1, runs, perRun[:runs])
	if runs < 2 {
		t.Fatalf("every account reached in one run: nothing was cut short (accounts by run: %v)", perRun)
	}
	fewest := slices.Min(perRun[:runs-1]) // of the runs cut short
	if bound := (n + 1 + fewest - 1) / fewest; runs > bound {
		t.Errorf("every account reached in %d runs, want at most ceil(%d/%d) = %d", runs, n+1, fewest, bound)
	}
	m := metricsOf(t, w.base)
	if failed, ok := seriesValue(m, `stripe_webhooks_reconcile_runs_total{outcome="failed"}`); !ok || failed != 0 {
		t.Errorf("failed periodic runs: %v, want 0: a run cut short by its time is ok\n%s", failed, grep(m, "reconcile_runs"))
	}
}

// Fault 6: reconcile never reaches back past WEBHOOK_RETENTION. An event
// older than it, applied and since deleted by retention, is not stored
// again: neither by the command, whose --since beyond the retention is
// clipped with a message, nor by the periodic run; one inside it is.
func TestReconcileWindowStopsAtRetention(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	fake := newFakeStripe(t, fakeKey)
	now := time.Now()
	deleted, inside := map[string][]byte{}, map[string][]byte{}
	for _, acct := range []string{"acct_retention_cli", "acct_retention_periodic"} {
		fake.accounts = append(fake.accounts, acct)
		fake.objects[acct] = accountObject(acct)
		deleted[acct] = stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: acct, Created: now.Add(-73 * time.Hour)})
		inside[acct] = stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: acct, Created: now.Add(-70 * time.Hour)})
		fake.addEvent(acct, deleted[acct])
		fake.addEvent(acct, inside[acct])
		// Applied when delivered, and deleted by retention since.
		applyNow(t, b, deleted[acct])
		if err := b.Store.DB().Exec("DELETE FROM webhook_events WHERE stripe_event_id = ?", testkit.EventID(deleted[acct])).Error; err != nil {
			t.Fatal(err)
		}
	}
	stored := func(p []byte) bool {
		_, err := b.Store.EventByStripeID(context.Background(), testkit.EventID(p))
		return err == nil
	}
	env := map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL, "WEBHOOK_RETENTION": "72h"}

	out, err := runCommand(t, b.Env(t, env), "reconcile", "--since", "100h", "--account", "acct_retention_cli")
	// The window starts inside the retention: the older event is not even listed.
	if want := "accounts 1, events listed 1, missing 1 stored"; err != nil || !strings.Contains(out, want) {
		t.Fatalf("reconcile: %v, want exit 0 and %q\n%s", err, want, lastLines(out, 5))
	}
	if want := "--since 100h reaches past WEBHOOK_RETENTION=72h"; !strings.Contains(out, want) || !strings.Contains(out, "(71h45m ago)") {
		t.Errorf("no message that --since was clipped to the retention (%q, 71h45m ago):\n%s", want, lastLines(out, 5))
	}
	if stored(deleted["acct_retention_cli"]) {
		t.Error("reconcile stored again an event older than WEBHOOK_RETENTION")
	}
	if !stored(inside["acct_retention_cli"]) {
		t.Error("reconcile did not store the missing event inside WEBHOOK_RETENTION")
	}

	w := startWorker(t, b, merge(env, map[string]string{"STRIPE_RECONCILE_INTERVAL": "2s"}))
	testenv.Eventually(t, 20*time.Second, "the periodic run to store the event inside the retention", func() bool {
		return stored(inside["acct_retention_periodic"])
	})
	testenv.Eventually(t, 10*time.Second, "the periodic run to end", func() bool {
		ok, _ := seriesValue(metricsOf(t, w.base), `stripe_webhooks_reconcile_runs_total{outcome="ok"}`)
		return ok >= 1
	})
	if stored(deleted["acct_retention_periodic"]) {
		t.Error("the periodic reconcile stored again an event older than WEBHOOK_RETENTION")
	}
	limit := now.Add(-72*time.Hour + reconcile.RetentionMargin).Unix()
	for _, r := range fake.requested() {
		if r.path == "events" && r.gte < limit {
			t.Errorf("%s events listed from %s, past the retention limit %s", strconv.Quote(r.account),
				time.Unix(r.gte, 0).UTC(), time.Unix(limit, 0).UTC())
		}
	}
}

// On a live deployment reconcile stores the live-mode events Stripe lists,
// and never the test-mode ones: they are never applied there.
func TestReconcileOnLiveStoresOnlyLiveEvents(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	fake := newFakeStripe(t, fakeKey)
	const acct = "acct_mode_1"
	created := time.Now().Add(-time.Hour)
	live := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: acct, Created: created, Live: true})
	test := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: acct, Created: created})
	fake.addEvent(acct, live)
	fake.addEvent(acct, test)
	env := b.Env(t, map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL, "STRIPE_LIVEMODE": "live"})
	out, err := runCommand(t, env, "reconcile", "--account", acct)
	if want := "events listed 2, missing 1 stored"; err != nil || !strings.Contains(out, want) {
		t.Fatalf("reconcile: %v, want %q\n%s", err, want, lastLines(out, 5))
	}
	if _, err := b.Store.EventByStripeID(context.Background(), testkit.EventID(test)); err == nil {
		t.Error("a live deployment's reconcile stored a test-mode event")
	}
	if _, err := b.Store.EventByStripeID(context.Background(), testkit.EventID(live)); err != nil {
		t.Errorf("the live-mode event was not stored: %v", err)
	}
}

// A periodic run leaves an event created within the five minutes a first
// delivery may take (its delivery may be in flight), and stores one
// created before them.
func TestPeriodicReconcileLeavesEventsStillInDelivery(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	fake := newFakeStripe(t, fakeKey)
	const acct = "acct_settle_1"
	fake.accounts = []string{acct}
	fake.objects[acct] = accountObject(acct)
	recent := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: acct, Created: time.Now().Add(-time.Minute)})
	settled := stripefixture.MustEvent(stripefixture.Options{Type: "capability.updated", Account: acct,
		Created: time.Now().Add(-reconcile.DeliverySettle - time.Second)})
	fake.addEvent(acct, recent)
	fake.addEvent(acct, settled)
	w := startWorker(t, b, map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL,
		"STRIPE_RECONCILE_INTERVAL": "2s"})
	testenv.Eventually(t, 20*time.Second, "the settled event to be stored and applied", processedEvent(t, b, testkit.EventID(settled)))
	testenv.Eventually(t, 10*time.Second, "the run to end", func() bool {
		ok, _ := seriesValue(metricsOf(t, w.base), `stripe_webhooks_reconcile_runs_total{outcome="ok"}`)
		return ok >= 1
	})
	if _, err := b.Store.EventByStripeID(context.Background(), testkit.EventID(recent)); err == nil {
		t.Error("a periodic run stored an event created a minute ago, whose delivery may be in flight")
	}
}
