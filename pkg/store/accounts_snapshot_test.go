package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/testenv"
)

// snapshotBase is the `created` time the tests' older events share.
var snapshotBase = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// snapEvent stores an event and applies it, as the worker does, with fn
// as its handler.
func snapEvent(t *testing.T, s *store.Store, fn func(context.Context, *store.Tx) error) {
	t.Helper()
	ctx := context.Background()
	id := testenv.RandomName("evt_")
	row, err := s.InsertEvent(ctx, store.NewEvent{StripeEventID: id, EventType: "account.updated",
		Payload: []byte(`{"id":"` + id + `","type":"account.updated"}`), ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := s.ProcessEvent(ctx, row.WebhookID, store.Attempt{}, func(ctx context.Context, tx *store.Tx, _ store.WebhookEvent) error {
		return fn(ctx, tx)
	})
	if err != nil || out != store.Applied {
		t.Fatalf("apply event: %v, %v", out, err)
	}
}

func snapApply(t *testing.T, s *store.Store, snap store.AccountSnapshot) store.SnapshotReport {
	t.Helper()
	report, err := s.ApplySnapshot(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	return report
}

func snapAccount(t *testing.T, s *store.Store, id string) store.ConnectedAccount {
	t.Helper()
	a, err := s.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// snapCapabilities returns the account's capabilities and their created-times.
func snapCapabilities(t *testing.T, a store.ConnectedAccount) (map[string]string, map[string]int64) {
	t.Helper()
	caps, times := map[string]string{}, map[string]int64{}
	if err := json.Unmarshal(a.Capabilities, &caps); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(a.CapabilitiesEventCreated, &times); err != nil {
		t.Fatal(err)
	}
	return caps, times
}

func snapExternalAccounts(t *testing.T, s *store.Store, accountID string) map[string]store.ExternalAccount {
	t.Helper()
	rows, err := s.ExternalAccounts(context.Background(), accountID)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]store.ExternalAccount{}
	for _, r := range rows {
		byID[r.StripeExternalAccountID] = r
	}
	return byID
}

func snapStr(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

func snapSameTime(p *time.Time, want time.Time) bool { return p != nil && p.Equal(want) }

func TestApplySnapshotRestoresDriftedAccount(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	const id = "acct_snapdrift"
	snapEvent(t, s, func(ctx context.Context, tx *store.Tx) error {
		if err := tx.ApplyAccount(ctx, store.AccountUpdate{AccountID: id, DetailsSubmitted: true,
			Requirements: store.JSON(`{"currently_due": ["external_account"]}`),
			Capabilities: map[string]string{"card_payments": "inactive"}, EventCreated: snapshotBase}); err != nil {
			return err
		}
		return tx.ApplyAuthorization(ctx, id, true, snapshotBase)
	})
	takenAt := snapshotBase.Add(time.Hour + 400*time.Millisecond)
	report := snapApply(t, s, store.AccountSnapshot{AccountID: id, TakenAt: takenAt,
		ChargesEnabled: true, PayoutsEnabled: true, DetailsSubmitted: true,
		Requirements: store.JSON(`{"currently_due":[]}`),
		Capabilities: map[string]string{"card_payments": "active"}})
	want := store.SnapshotReport{AccountChanged: true, CapabilitiesWritten: []string{"card_payments"}}
	if diff := cmp.Diff(want, report); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	a := snapAccount(t, s, id)
	at := takenAt.Truncate(time.Second)
	if !a.ChargesEnabled || !a.PayoutsEnabled || !a.DetailsSubmitted || !snapSameTime(a.AccountEventCreated, at) {
		t.Errorf("account = charges %v payouts %v details %v account_event_created %v; want restored as of %v",
			a.ChargesEnabled, a.PayoutsEnabled, a.DetailsSubmitted, a.AccountEventCreated, at)
	}
	var requirements any
	if err := json.Unmarshal(a.Requirements, &requirements); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"currently_due": []any{}}, requirements); diff != "" {
		t.Errorf("requirements (-want +got):\n%s", diff)
	}
	caps, times := snapCapabilities(t, a)
	if diff := cmp.Diff(map[string]string{"card_payments": "active"}, caps); diff != "" {
		t.Errorf("capabilities (-want +got):\n%s", diff)
	}
	if times["card_payments"] != at.Unix() {
		t.Errorf("card_payments created-time = %d, want %d", times["card_payments"], at.Unix())
	}
	if !snapSameTime(a.DeauthorizedAt, snapshotBase) || !snapSameTime(a.AuthorizationEventCreated, snapshotBase) {
		t.Errorf("authorization columns changed: deauthorized_at %v, authorization_event_created %v", a.DeauthorizedAt, a.AuthorizationEventCreated)
	}
}

func TestApplySnapshotCapabilitiesKeepNewerEvents(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	const id = "acct_snapcaps"
	takenAt := snapshotBase.Add(time.Hour + 400*time.Millisecond)
	at := takenAt.Truncate(time.Second)
	snapEvent(t, s, func(ctx context.Context, tx *store.Tx) error {
		err := tx.ApplyAccount(ctx, store.AccountUpdate{AccountID: id, Capabilities: map[string]string{
			"card_payments": "inactive", "transfers": "inactive", "legacy_payments": "active", "tax_reporting_us_1099_k": "active",
		}, EventCreated: snapshotBase})
		if err != nil {
			return err
		}
		// Newer than the snapshot, and in the same second as the fetch began.
		if err := tx.ApplyCapability(ctx, store.CapabilityUpdate{AccountID: id, Capability: "transfers", Status: "active",
			EventCreated: at.Add(10 * time.Second)}); err != nil {
			return err
		}
		if err := tx.ApplyCapability(ctx, store.CapabilityUpdate{AccountID: id, Capability: "tax_reporting_us_1099_k", Status: "active",
			EventCreated: at.Add(10 * time.Second)}); err != nil {
			return err
		}
		return tx.ApplyCapability(ctx, store.CapabilityUpdate{AccountID: id, Capability: "us_bank_account_ach_payments", Status: "pending",
			EventCreated: at.Add(900 * time.Millisecond)})
	})
	report := snapApply(t, s, store.AccountSnapshot{AccountID: id, TakenAt: takenAt, Capabilities: map[string]string{
		"card_payments": "active", "transfers": "inactive", "us_bank_account_ach_payments": "active", "link_payments": "active",
	}})
	want := store.SnapshotReport{
		CapabilitiesWritten: []string{"card_payments", "link_payments"},
		CapabilitiesRemoved: []string{"legacy_payments"},
	}
	if diff := cmp.Diff(want, report); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	caps, times := snapCapabilities(t, snapAccount(t, s, id))
	wantCaps := map[string]string{
		"card_payments":                "active",  // older: overwritten
		"transfers":                    "active",  // newer event: kept
		"us_bank_account_ach_payments": "pending", // same second: the event's write is kept
		"tax_reporting_us_1099_k":      "active",  // absent but newer: kept
		"link_payments":                "active",  // new
	}
	if diff := cmp.Diff(wantCaps, caps); diff != "" {
		t.Errorf("capabilities (-want +got):\n%s", diff)
	}
	wantTimes := map[string]int64{
		"card_payments":                at.Unix(),
		"transfers":                    at.Unix() + 10,
		"us_bank_account_ach_payments": at.Unix(),
		"tax_reporting_us_1099_k":      at.Unix() + 10,
		"link_payments":                at.Unix(),
		"legacy_payments":              at.Unix(), // removed as of the snapshot
	}
	if diff := cmp.Diff(wantTimes, times); diff != "" {
		t.Errorf("capability created-times (-want +got):\n%s", diff)
	}

	// A late event older than the snapshot changes nothing it wrote.
	snapEvent(t, s, func(ctx context.Context, tx *store.Tx) error {
		return tx.ApplyAccount(ctx, store.AccountUpdate{AccountID: id, ChargesEnabled: true, Capabilities: map[string]string{
			"card_payments": "inactive", "legacy_payments": "active",
		}, EventCreated: at.Add(-time.Second)})
	})
	a := snapAccount(t, s, id)
	late, _ := snapCapabilities(t, a)
	if diff := cmp.Diff(wantCaps, late); diff != "" || a.ChargesEnabled {
		t.Errorf("after a late older event: charges %v, capabilities (-want +got):\n%s", a.ChargesEnabled, diff)
	}
}

func TestApplySnapshotExternalAccounts(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	const id, other = "acct_snapext", "acct_snapother"
	takenAt := snapshotBase.Add(time.Hour + 400*time.Millisecond)
	at := takenAt.Truncate(time.Second)
	bank := func(extID, accountID, status string, created time.Time) store.ExternalAccountUpdate {
		return store.ExternalAccountUpdate{ID: extID, AccountID: accountID, Object: "bank_account", Last4: "6789",
			BankName: "STRIPE TEST BANK", Currency: "usd", Status: status, EventCreated: created}
	}
	snapEvent(t, s, func(ctx context.Context, tx *store.Tx) error {
		deleted := bank("ba_deleted", id, "new", snapshotBase)
		deleted.Deleted = true
		for _, u := range []store.ExternalAccountUpdate{
			bank("ba_gone", id, "new", snapshotBase),
			bank("ba_kept", id, "new", snapshotBase),
			bank("ba_created_after", id, "new", at.Add(5*time.Second)),
			bank("ba_same_second", id, "new", at.Add(700*time.Millisecond)),
			bank("ba_updated_after", id, "new", at.Add(5*time.Second)),
			bank("ba_deleted", id, "new", snapshotBase.Add(-time.Minute)),
			deleted,
			bank("ba_other", other, "new", snapshotBase),
		} {
			if err := tx.ApplyExternalAccount(ctx, u); err != nil {
				return err
			}
		}
		return nil
	})
	before := snapExternalAccounts(t, s, id)

	report := snapApply(t, s, store.AccountSnapshot{AccountID: id, TakenAt: takenAt, Capabilities: map[string]string{},
		ExternalAccounts: []store.ExternalAccountUpdate{
			bank("ba_kept", "", "verified", time.Time{}),
			bank("ba_updated_after", "", "errored", time.Time{}),
			{ID: "card_new", Object: "card", Last4: "4000056655665556", Brand: "Visa", Currency: "usd", DefaultForCurrency: true},
		}})
	want := store.SnapshotReport{
		AccountChanged:           true, // its fields had never been written
		ExternalAccountsUpserted: []string{"ba_kept", "card_new"},
		ExternalAccountsDeleted:  []string{"ba_gone"},
	}
	if diff := cmp.Diff(want, report); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}

	got := snapExternalAccounts(t, s, id)
	if r := got["ba_gone"]; !snapSameTime(r.DeletedAt, at) || !snapSameTime(r.EventCreated, at) {
		t.Errorf("ba_gone: deleted_at %v event_created %v, want both %v", r.DeletedAt, r.EventCreated, at)
	}
	if r := got["ba_kept"]; snapStr(r.Status) != "verified" || r.DeletedAt != nil || !snapSameTime(r.EventCreated, at) {
		t.Errorf("ba_kept: status %s deleted_at %v event_created %v, want verified, live, %v", snapStr(r.Status), r.DeletedAt, r.EventCreated, at)
	}
	for _, extID := range []string{"ba_created_after", "ba_same_second", "ba_updated_after", "ba_deleted"} {
		if diff := cmp.Diff(before[extID], got[extID]); diff != "" {
			t.Errorf("%s was written (-before +after):\n%s", extID, diff)
		}
	}
	r, ok := got["card_new"]
	if !ok || r.Object != "card" || snapStr(r.Last4) != "5556" || snapStr(r.Brand) != "Visa" || !r.DefaultForCurrency ||
		r.DeletedAt != nil || !snapSameTime(r.EventCreated, at) {
		t.Errorf("card_new = %+v (last4 %s), want a live card ending 5556 as of %v", r, snapStr(r.Last4), at)
	}
	if r := snapExternalAccounts(t, s, other)["ba_other"]; r.DeletedAt != nil {
		t.Errorf("another account's bank account was marked deleted")
	}
}

func TestApplySnapshotCreatesAccount(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	const id = "acct_snapnew"
	takenAt := snapshotBase.Add(time.Hour)
	report := snapApply(t, s, store.AccountSnapshot{AccountID: id, TakenAt: takenAt,
		ChargesEnabled: true, DetailsSubmitted: true, Requirements: store.JSON(`{"currently_due":[]}`),
		Capabilities: map[string]string{"card_payments": "active"},
		ExternalAccounts: []store.ExternalAccountUpdate{
			{ID: "ba_new", Object: "bank_account", Last4: "6789", Currency: "usd", Status: "new"},
		}})
	want := store.SnapshotReport{AccountChanged: true, CapabilitiesWritten: []string{"card_payments"},
		ExternalAccountsUpserted: []string{"ba_new"}}
	if diff := cmp.Diff(want, report); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	a := snapAccount(t, s, id)
	if !a.ChargesEnabled || a.PayoutsEnabled || !a.DetailsSubmitted || !snapSameTime(a.AccountEventCreated, takenAt) ||
		a.DeauthorizedAt != nil || a.AuthorizationEventCreated != nil {
		t.Errorf("account = %+v", a)
	}
	if caps, _ := snapCapabilities(t, a); caps["card_payments"] != "active" {
		t.Errorf("capabilities = %v", caps)
	}
	if r, ok := snapExternalAccounts(t, s, id)["ba_new"]; !ok || r.DeletedAt != nil {
		t.Errorf("ba_new = %+v, %v", r, ok)
	}
}

func TestApplySnapshotTwiceIsANoOp(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	const id = "acct_snaptwice"
	snapEvent(t, s, func(ctx context.Context, tx *store.Tx) error {
		err := tx.ApplyAccount(ctx, store.AccountUpdate{AccountID: id,
			Capabilities: map[string]string{"card_payments": "inactive", "legacy_payments": "active"}, EventCreated: snapshotBase})
		if err != nil {
			return err
		}
		for _, extID := range []string{"ba_gone", "ba_kept"} {
			err := tx.ApplyExternalAccount(ctx, store.ExternalAccountUpdate{ID: extID, AccountID: id, Object: "bank_account",
				Last4: "6789", Status: "new", EventCreated: snapshotBase})
			if err != nil {
				return err
			}
		}
		return nil
	})
	snap := store.AccountSnapshot{AccountID: id, TakenAt: snapshotBase.Add(time.Hour + 400*time.Millisecond),
		ChargesEnabled: true, Requirements: store.JSON(`{"currently_due": [], "disabled_reason": null}`),
		Capabilities: map[string]string{"card_payments": "active"},
		ExternalAccounts: []store.ExternalAccountUpdate{
			{ID: "ba_kept", Object: "bank_account", Last4: "6789", Status: "verified"},
			{ID: "card_new", Object: "card", Last4: "4242", Brand: "Visa"},
		}}
	if first := snapApply(t, s, snap); !first.Changed() {
		t.Fatalf("the first snapshot changed nothing: %+v", first)
	}
	accountBefore, extBefore := snapAccount(t, s, id), snapExternalAccounts(t, s, id)

	if second := snapApply(t, s, snap); second.Changed() {
		t.Errorf("the second snapshot reports changes: %+v", second)
	}
	if diff := cmp.Diff(accountBefore, snapAccount(t, s, id)); diff != "" {
		t.Errorf("account (-first +second):\n%s", diff)
	}
	if diff := cmp.Diff(extBefore, snapExternalAccounts(t, s, id)); diff != "" {
		t.Errorf("external accounts (-first +second):\n%s", diff)
	}

	// A newer snapshot of the same state writes the same values: nothing
	// is reported, only the created-times move.
	snap.TakenAt = snap.TakenAt.Add(time.Minute)
	if third := snapApply(t, s, snap); third.Changed() {
		t.Errorf("a newer snapshot of the same state reports changes: %+v", third)
	}
	if a := snapAccount(t, s, id); !snapSameTime(a.AccountEventCreated, snap.TakenAt.Truncate(time.Second)) {
		t.Errorf("account_event_created = %v, want %v", a.AccountEventCreated, snap.TakenAt.Truncate(time.Second))
	}
}

// A snapshot and a newer account.updated of one account, applied at the
// same time, end with the event's fields whichever commits first. A third
// transaction holds the account's row so that both queue behind it in the
// order under test.
func TestApplySnapshotAndNewerEventConcurrently(t *testing.T) {
	t.Parallel()
	for _, snapshotFirst := range []bool{true, false} {
		name := "event first"
		if snapshotFirst {
			name = "snapshot first"
		}
		t.Run(name, func(t *testing.T) { snapshotAndEventRace(t, snapshotFirst) })
	}
}

// snapshotAndEventRace applies a snapshot and a newer account.updated of
// one account at the same time, the one named first queued first behind a
// transaction that holds the account's row, and checks that the account
// ends with the event's fields.
func snapshotAndEventRace(t *testing.T, snapshotFirst bool) {
	t.Parallel()
	s, _ := setup(t)
	const id = "acct_snaprace"
	snapEvent(t, s, func(ctx context.Context, tx *store.Tx) error {
		return tx.ApplyAccount(ctx, store.AccountUpdate{AccountID: id,
			Capabilities: map[string]string{"card_payments": "inactive", "transfers": "inactive"}, EventCreated: snapshotBase})
	})
	takenAt := snapshotBase.Add(time.Hour + 400*time.Millisecond)
	eventCreated := takenAt.Add(10 * time.Second).Truncate(time.Second)

	holder := s.DB().Begin()
	if err := holder.Exec(`SELECT 1 FROM stripe_connected_accounts WHERE stripe_account_id = ? FOR UPDATE`, id).Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Rollback() })
	waiting := func(n int64) func() bool {
		return func() bool {
			var got int64
			err := s.DB().Raw(`SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&got).Error
			return err == nil && got == n
		}
	}
	errs := make(chan error, 2)
	snapshot := func() {
		_, err := s.ApplySnapshot(context.Background(), store.AccountSnapshot{AccountID: id, TakenAt: takenAt,
			Capabilities: map[string]string{"card_payments": "inactive", "transfers": "active"}})
		errs <- err
	}
	row, err := s.InsertEvent(context.Background(), store.NewEvent{StripeEventID: "evt_snaprace", EventType: "account.updated",
		Payload: []byte(`{"id":"evt_snaprace","type":"account.updated"}`), ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	event := func() {
		_, _, err := s.ProcessEvent(context.Background(), row.WebhookID, store.Attempt{}, func(ctx context.Context, tx *store.Tx, _ store.WebhookEvent) error {
			return tx.ApplyAccount(ctx, store.AccountUpdate{AccountID: id, ChargesEnabled: true, PayoutsEnabled: true,
				Capabilities: map[string]string{"card_payments": "active"}, EventCreated: eventCreated})
		})
		errs <- err
	}
	first, second := event, snapshot
	if snapshotFirst {
		first, second = snapshot, event
	}
	go first()
	testenv.Eventually(t, 10*time.Second, "the first to wait on the account's row", waiting(1))
	go second()
	testenv.Eventually(t, 10*time.Second, "the second to wait on the account's row", waiting(2))
	if err := holder.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	a := snapAccount(t, s, id)
	if !a.ChargesEnabled || !a.PayoutsEnabled || !snapSameTime(a.AccountEventCreated, eventCreated) {
		t.Errorf("account = charges %v payouts %v account_event_created %v; want the event's", a.ChargesEnabled, a.PayoutsEnabled, a.AccountEventCreated)
	}
	caps, times := snapCapabilities(t, a)
	if diff := cmp.Diff(map[string]string{"card_payments": "active"}, caps); diff != "" {
		t.Errorf("capabilities (-want +got):\n%s", diff)
	}
	wantTimes := map[string]int64{"card_payments": eventCreated.Unix(), "transfers": eventCreated.Unix()}
	if diff := cmp.Diff(wantTimes, times); diff != "" {
		t.Errorf("capability created-times (-want +got):\n%s", diff)
	}
}

func TestApplySnapshotRejectsIncompleteSnapshots(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	takenAt := snapshotBase
	for name, snap := range map[string]store.AccountSnapshot{
		"no account":         {TakenAt: takenAt, Capabilities: map[string]string{}},
		"no time":            {AccountID: "acct_x", Capabilities: map[string]string{}},
		"no capabilities":    {AccountID: "acct_x", TakenAt: takenAt},
		"bad object":         {AccountID: "acct_x", TakenAt: takenAt, Capabilities: map[string]string{}, ExternalAccounts: []store.ExternalAccountUpdate{{ID: "x", Object: "source"}}},
		"other account":      {AccountID: "acct_x", TakenAt: takenAt, Capabilities: map[string]string{}, ExternalAccounts: []store.ExternalAccountUpdate{{ID: "x", AccountID: "acct_y", Object: "card"}}},
		"deleted in listing": {AccountID: "acct_x", TakenAt: takenAt, Capabilities: map[string]string{}, ExternalAccounts: []store.ExternalAccountUpdate{{ID: "x", Object: "card", Deleted: true}}},
	} {
		if _, err := s.ApplySnapshot(context.Background(), snap); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := s.Account(context.Background(), "acct_x"); !store.IsNotFound(err) {
		t.Errorf("a rejected snapshot wrote the account: %v", err)
	}
}

// A snapshot settles the same-second ties of the seconds before its own:
// it deletes the account's resync request then, and not while a tie is of
// its own second (which it does not overwrite).
func TestApplySnapshotDeletesTheResyncRequestItSettles(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	const id = "acct_snapties"
	takenAt := snapshotBase.Add(time.Hour + 400*time.Millisecond)
	at := takenAt.Truncate(time.Second)
	// Two statuses of one second that do not chain: the first is kept, and
	// the account's resync requested.
	snapEvent(t, s, func(ctx context.Context, tx *store.Tx) error {
		tx.SettleTies(true, nil)
		for _, status := range []string{"pending", "active"} {
			err := tx.ApplyCapability(ctx, store.CapabilityUpdate{AccountID: id, Capability: "card_payments", Status: status,
				EventCreated: at})
			if err != nil {
				return err
			}
		}
		return nil
	})
	requested := func() []string {
		t.Helper()
		ids, err := s.DueResyncRequests(ctx, time.Now().Add(time.Minute), 10)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := requested(); !cmp.Equal([]string{id}, got) {
		t.Fatalf("resync requests = %v, want %s", got, id)
	}
	snap := store.AccountSnapshot{AccountID: id, TakenAt: takenAt, Capabilities: map[string]string{"card_payments": "inactive"}}
	snapApply(t, s, snap)
	caps, _ := snapCapabilities(t, snapAccount(t, s, id))
	if got := requested(); caps["card_payments"] != "pending" || !cmp.Equal([]string{id}, got) {
		t.Errorf("a snapshot of the ties' second: card_payments %s, requests %v; want pending kept, %s requested", caps["card_payments"], got, id)
	}
	snap.TakenAt = takenAt.Add(time.Second)
	snapApply(t, s, snap)
	caps, _ = snapCapabilities(t, snapAccount(t, s, id))
	if got := requested(); caps["card_payments"] != "inactive" || len(got) != 0 {
		t.Errorf("a snapshot of a later second: card_payments %s, requests %v; want inactive, none", caps["card_payments"], got)
	}
}

// What a snapshot writes has no previous values: an event of the
// snapshot's second is not taken for the earlier one of a tie because it
// matches the previous values of the event the snapshot overwrote.
func TestApplySnapshotForgetsThePreviousValuesItOverwrites(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	const id = "acct_snapprevious"
	takenAt := snapshotBase.Add(time.Hour + 400*time.Millisecond)
	at := takenAt.Truncate(time.Second)
	apply := func(u store.AccountUpdate, c store.CapabilityUpdate) []store.Tie {
		t.Helper()
		var ties []store.Tie
		snapEvent(t, s, func(ctx context.Context, tx *store.Tx) error {
			tx.SettleTies(false, func(tie store.Tie) { ties = append(ties, tie) })
			if err := tx.ApplyAccount(ctx, u); err != nil {
				return err
			}
			return tx.ApplyCapability(ctx, c)
		})
		return ties
	}
	apply(store.AccountUpdate{AccountID: id, ChargesEnabled: true, Previous: store.JSON(`{"charges_enabled": false}`), EventCreated: snapshotBase},
		store.CapabilityUpdate{AccountID: id, Capability: "card_payments", Status: "active", Previous: store.JSON(`{"status": "inactive"}`),
			EventCreated: snapshotBase})
	snapApply(t, s, store.AccountSnapshot{AccountID: id, TakenAt: takenAt, ChargesEnabled: true,
		Capabilities: map[string]string{"card_payments": "active"}})
	ties := apply(store.AccountUpdate{AccountID: id, EventCreated: at},
		store.CapabilityUpdate{AccountID: id, Capability: "card_payments", Status: "inactive", EventCreated: at})
	want := []store.Tie{{Object: store.TieAccount, Settled: store.TieKept}, {Object: store.TieCapability, Settled: store.TieKept}}
	if diff := cmp.Diff(want, ties); diff != "" {
		t.Errorf("ties with what the snapshot wrote (-want +got):\n%s", diff)
	}
}
