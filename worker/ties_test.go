package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/testkit"
)

// With STRIPE_API_KEY, the worker counts each same-second tie by how it
// was settled, and a tie the events cannot settle (a capability's change
// undone within the second) is settled by a resync of the account once the
// debounce has passed: the account ends as Stripe's current object.
func TestSameSecondTiesAreCountedAndResyncedFromStripe(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	fake := newFakeStripe(t, fakeKey)
	const acct = "acct_ties_1"
	fake.objects[acct] = json.RawMessage(fmt.Sprintf(`{"id":%q,"object":"account","charges_enabled":true,"payouts_enabled":false,
		"details_submitted":true,"capabilities":{"card_payments":"inactive","transfers":"active"},"requirements":{"currently_due":[]}}`, acct))
	w := startWorker(t, b, map[string]string{"STRIPE_API_KEY": fakeKey, "STRIPE_API_BASE": fake.srv.URL,
		"STRIPE_RESYNC_DEBOUNCE": "1s"})
	created := time.Now().Add(-time.Minute)
	deliver := func(o stripefixture.Options) {
		t.Helper()
		o.Account, o.Created = acct, created
		id := b.Seed(t, stripefixture.MustEvent(o))[0]
		testenv.Eventually(t, 20*time.Second, "event "+id+" to be processed", processedEvent(t, b, id))
	}
	// Settled: the later account.updated first, then the earlier one.
	caps := map[string]any{"card_payments": "inactive", "transfers": "active"}
	deliver(stripefixture.Options{Type: "account.updated", Mutate: testkit.Set("id", acct, "charges_enabled", true, "details_submitted", true,
		"capabilities", caps), Previous: map[string]any{"charges_enabled": false}})
	deliver(stripefixture.Options{Type: "account.updated", Mutate: testkit.Set("id", acct, "charges_enabled", false, "details_submitted", true,
		"capabilities", caps), Previous: map[string]any{"details_submitted": false}})
	if !chargesEnabled(t, b, acct) {
		t.Error("the earlier account.updated, delivered last, overwrote the later one")
	}
	// Settled (the first follows the account.updated), then not settled:
	// card_payments inactive -> pending -> inactive.
	deliver(stripefixture.Options{Type: "capability.updated", Mutate: testkit.Set("account", acct, "status", "pending"),
		Previous: map[string]any{"status": "inactive"}})
	deliver(stripefixture.Options{Type: "capability.updated", Mutate: testkit.Set("account", acct, "status", "inactive"),
		Previous: map[string]any{"status": "pending"}})

	testenv.Eventually(t, 20*time.Second, "the account's resync from Stripe", func() bool {
		return resyncRequests(t, b) == 0 && capabilityOf(t, b, acct, "card_payments") == "inactive"
	})
	m := metricsOf(t, w.base)
	for _, want := range []string{
		`stripe_webhooks_same_second_ties_total{object="account",settled="earlier"} 1`,
		`stripe_webhooks_same_second_ties_total{object="account",settled="chained"} 0`,
		// The earlier account.updated carried card_payments and transfers as stored.
		`stripe_webhooks_same_second_ties_total{object="capability",settled="same_state"} 2`,
		`stripe_webhooks_same_second_ties_total{object="capability",settled="chained"} 1`,
		`stripe_webhooks_same_second_ties_total{object="capability",settled="resync"} 1`,
		`stripe_webhooks_same_second_ties_total{object="capability",settled="kept"} 0`,
		"stripe_webhooks_resynced_accounts_total 1",
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, grepLines(m, "stripe_webhooks_"))
		}
	}
	a, err := b.Store.Account(context.Background(), acct)
	if err != nil {
		t.Fatal(err)
	}
	if !a.ChargesEnabled || a.PayoutsEnabled || !a.DetailsSubmitted || capabilityOf(t, b, acct, "transfers") != "active" {
		t.Errorf("account = %+v, want Stripe's object", a)
	}
}

func resyncRequests(t *testing.T, b *testkit.Backend) int64 {
	t.Helper()
	var n int64
	if err := b.Store.DB().Raw("SELECT count(*) FROM resync_requests").Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func capabilityOf(t *testing.T, b *testkit.Backend, account, name string) string {
	t.Helper()
	a, err := b.Store.Account(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	caps := map[string]string{}
	if err := json.Unmarshal(a.Capabilities, &caps); err != nil {
		t.Fatal(err)
	}
	return caps[name]
}
