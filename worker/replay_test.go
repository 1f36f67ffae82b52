package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/worker/handler"
	"stripe-webhooks/worker/internal/testkit"
)

func replayCmd(t *testing.T, b *testkit.Backend, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"worker", "replay"}, args...), b.Env(t, nil), &out, &out)
	return out.String(), err
}

func processAll(t *testing.T, b *testkit.Backend) {
	t.Helper()
	var ids []string
	b.Store.DB().Raw("SELECT id FROM webhook_events WHERE NOT processed").Scan(&ids)
	for _, id := range ids {
		_, _, _ = b.Store.ProcessEvent(context.Background(), id, store.Attempt{Final: true}, handler.Apply)
	}
}

// An event processed with a stale handler result is re-applied by replay.
func TestReplayReappliesAStaleResult(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	ids := b.Seed(t, stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_replay",
		Mutate: testkit.Set("charges_enabled", true)}))
	processAll(t, b)
	// What an older, buggy handler would have left behind.
	b.Store.DB().Exec("UPDATE stripe_connected_accounts SET charges_enabled = false WHERE stripe_account_id = 'acct_replay'")

	out, err := replayCmd(t, b, "--event", ids[0])
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	if !strings.Contains(out, "replayed 1 events, 0 failed") {
		t.Errorf("output %q", out)
	}
	if a, _ := b.Store.Account(context.Background(), "acct_replay"); !a.ChargesEnabled {
		t.Error("replay did not re-apply the event")
	}
	if _, err := replayCmd(t, b, "--event", "evt_unknown"); err == nil {
		t.Error("replay of an unknown event succeeded")
	}
}

func TestReplaySinceAndFailed(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	b.Seed(t,
		stripefixture.MustEvent(stripefixture.Options{Type: "capability.updated", Account: "acct_r1"}),
		stripefixture.MustEvent(stripefixture.Options{Type: "capability.updated", Account: "acct_r2"}),
		stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_r3"}),
		// Created by Stripe a minute ago, stored three days ago (below): before --since 24h.
		stripefixture.MustEvent(stripefixture.Options{Type: "capability.updated", ID: "evt_stored_long_ago", Account: "acct_r5"}),
		stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_dead_one", Account: "acct_r4", Mutate: testkit.Set("payouts_enabled", "no")}),
	)
	processAll(t, b) // the poison one fails its (final) attempt: dead
	row, _ := b.Store.EventByStripeID(context.Background(), "evt_dead_one")
	if row.DeadAt == nil || row.Processed {
		t.Fatalf("poison event not dead: %+v", row)
	}
	b.Store.DB().Exec("UPDATE webhook_events SET created_at = now() - interval '3 days' WHERE stripe_event_id = 'evt_stored_long_ago' OR (event_type = 'account.updated' AND stripe_event_id <> 'evt_dead_one')")

	out, err := replayCmd(t, b, "--since", "24h", "--type", "capability.updated")
	if err != nil || !strings.Contains(out, "replayed 2 events, 0 failed") {
		t.Errorf("--since 24h --type capability.updated: %v %q", err, out)
	}
	// Still poison: it fails again, and says so.
	out, err = replayCmd(t, b, "--failed")
	if err == nil || !strings.Contains(out, "replayed 0 events, 1 failed") {
		t.Errorf("--failed with the cause unfixed: %v %q", err, out)
	}
	b.EditPayload(t, "evt_dead_one", func(e map[string]any) { testkit.DataObject(e)["payouts_enabled"] = true })
	out, err = replayCmd(t, b, "--failed")
	if err != nil || !strings.Contains(out, "replayed 1 events, 0 failed") {
		t.Errorf("--failed once fixed: %v %q", err, out)
	}
	row, _ = b.Store.EventByStripeID(context.Background(), "evt_dead_one")
	if !row.Processed || row.DeadAt != nil || row.RetryCount != 2 {
		t.Errorf("after replay: processed %v dead_at %v retry_count %d; want true, nil, 2", row.Processed, row.DeadAt, row.RetryCount)
	}
}

func TestReplayUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{}, {"--event", "evt_1", "--failed"}, {"--since", "soon"}, {"--event", "evt_1", "--type", "x"}} {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"worker", "replay"}, args...), nil, &out, &out)
		if code := config.ExitCode(err, &out); code != 2 {
			t.Errorf("replay %v: exit %d, want 2", args, code)
		}
	}
}
