package handler_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/handler"
)

const acct = "acct_handlertest0001"

func setup(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(testenv.Database(t, ""), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// deliver stores an event and processes it as the worker does.
func deliver(t *testing.T, st *store.Store, o stripefixture.Options) (store.Outcome, error) {
	t.Helper()
	out, _, err := st.ProcessEvent(context.Background(), insert(t, st, o), store.Attempt{}, handler.Apply)
	return out, err
}

// insert stores an event, unprocessed, and returns its row id.
func insert(t *testing.T, st *store.Store, o stripefixture.Options) string {
	t.Helper()
	payload := event(t, o)
	row, err := st.InsertEvent(context.Background(), store.NewEvent{StripeEventID: payload.StripeEventID,
		EventType: payload.EventType, Payload: payload.Payload, ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return row.WebhookID
}

// event builds an event (of acct unless o names another account) as the
// worker reads it from its row.
func event(t *testing.T, o stripefixture.Options) store.WebhookEvent {
	t.Helper()
	if o.Account == "" {
		o.Account = acct
	}
	payload := stripefixture.MustEvent(o)
	var env struct{ ID, Type string }
	if err := json.Unmarshal(payload, &env); err != nil {
		t.Fatal(err)
	}
	return store.WebhookEvent{StripeEventID: env.ID, EventType: env.Type, Payload: payload}
}

func mustDeliver(t *testing.T, st *store.Store, o stripefixture.Options) {
	t.Helper()
	if out, err := deliver(t, st, o); err != nil || out != store.Applied {
		t.Fatalf("%s: outcome %v, error %v", o.Type, out, err)
	}
}

func account(t *testing.T, st *store.Store) (store.ConnectedAccount, map[string]string) {
	t.Helper()
	a, err := st.Account(context.Background(), acct)
	if err != nil {
		t.Fatalf("account row: %v", err)
	}
	caps := map[string]string{}
	if err := json.Unmarshal(a.Capabilities, &caps); err != nil {
		t.Fatal(err)
	}
	return a, caps
}

func externals(t *testing.T, st *store.Store) []store.ExternalAccount {
	t.Helper()
	rows, err := st.ExternalAccounts(context.Background(), acct)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func at(sec int64) time.Time { return time.Unix(1_700_000_000+sec, 0) }

func set(kv ...any) func(map[string]any) {
	return func(o map[string]any) {
		for i := 0; i < len(kv); i += 2 {
			o[kv[i].(string)] = kv[i+1]
		}
	}
}

func str(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// Each type's effect, from Stripe's example objects.
func TestEffects(t *testing.T) {
	t.Parallel()
	t.Run("account.updated", func(t *testing.T) {
		t.Parallel()
		st := setup(t)
		mustDeliver(t, st, stripefixture.Options{Type: "account.updated", Created: at(1),
			Mutate: set("charges_enabled", true, "details_submitted", true)})
		a, caps := account(t, st)
		if !a.ChargesEnabled || a.PayoutsEnabled || !a.DetailsSubmitted {
			t.Errorf("booleans = %v %v %v, want true false true", a.ChargesEnabled, a.PayoutsEnabled, a.DetailsSubmitted)
		}
		if diff := cmp.Diff(map[string]string{"card_payments": "active", "transfers": "active"}, caps); diff != "" {
			t.Errorf("capabilities (-want +got):\n%s", diff)
		}
		var req map[string]any
		if err := json.Unmarshal(a.Requirements, &req); err != nil || req["disabled_reason"] != "requirements.past_due" {
			t.Errorf("requirements = %s", a.Requirements)
		}
	})
	t.Run("capability.updated creates the account", func(t *testing.T) {
		t.Parallel()
		st := setup(t)
		mustDeliver(t, st, stripefixture.Options{Type: "capability.updated", Created: at(1), Mutate: set("status", "pending")})
		a, caps := account(t, st)
		if a.ChargesEnabled || a.PayoutsEnabled || a.DetailsSubmitted {
			t.Errorf("booleans of a row created by capability.updated must be false: %+v", a)
		}
		if diff := cmp.Diff(map[string]string{"card_payments": "pending"}, caps); diff != "" {
			t.Errorf("capabilities (-want +got):\n%s", diff)
		}
	})
	t.Run("external accounts: bank account and card", func(t *testing.T) {
		t.Parallel()
		st := setup(t)
		mustDeliver(t, st, stripefixture.Options{Type: "account.external_account.created", Created: at(1)})
		mustDeliver(t, st, stripefixture.Options{Type: "account.external_account.created", Created: at(1), Card: true})
		rows := externals(t, st)
		if len(rows) != 2 {
			t.Fatalf("%d external accounts, want 2", len(rows))
		}
		bank, card := rows[0], rows[1]
		if bank.Object != "bank_account" || str(bank.Last4) != "6789" || str(bank.BankName) != "STRIPE TEST BANK" ||
			str(bank.Currency) != "usd" || str(bank.Status) != "new" || !bank.DefaultForCurrency || bank.DeletedAt != nil {
			t.Errorf("bank account = %+v", bank)
		}
		if card.Object != "card" || str(card.Last4) != "4242" || str(card.Brand) != "Visa" || str(card.Currency) != "usd" {
			t.Errorf("card = %+v", card)
		}
		if _, err := st.Account(context.Background(), acct); err != nil {
			t.Errorf("an external account of a new account creates the account's row: %v", err)
		}
	})
	t.Run("external account updated then deleted", func(t *testing.T) {
		t.Parallel()
		st := setup(t)
		mustDeliver(t, st, stripefixture.Options{Type: "account.external_account.created", Created: at(1)})
		mustDeliver(t, st, stripefixture.Options{Type: "account.external_account.updated", Created: at(2), Mutate: set("status", "verified")})
		if r := externals(t, st)[0]; str(r.Status) != "verified" {
			t.Errorf("status after update = %s", str(r.Status))
		}
		mustDeliver(t, st, stripefixture.Options{Type: "account.external_account.deleted", Created: at(3)})
		r := externals(t, st)[0]
		if r.DeletedAt == nil || !r.DeletedAt.Equal(at(3)) {
			t.Errorf("deleted_at = %v, want %v", r.DeletedAt, at(3))
		}
	})
	t.Run("other types are processed without effect", func(t *testing.T) {
		t.Parallel()
		st := setup(t)
		mustDeliver(t, st, stripefixture.Options{Type: "plan.created"})
		if _, err := st.Account(context.Background(), acct); !store.IsNotFound(err) {
			t.Errorf("plan.created touched the accounts table: %v", err)
		}
	})
}

// An older event never overwrites what a newer one wrote to the same object.
func TestOutOfOrder(t *testing.T) {
	t.Parallel()
	t.Run("older account update after newer", func(t *testing.T) {
		t.Parallel()
		st := setup(t)
		mustDeliver(t, st, stripefixture.Options{Type: "account.updated", Created: at(20), Mutate: set("charges_enabled", true, "payouts_enabled", true)})
		mustDeliver(t, st, stripefixture.Options{Type: "account.updated", Created: at(10), Mutate: set("charges_enabled", false, "payouts_enabled", false)})
		if a, _ := account(t, st); !a.ChargesEnabled || !a.PayoutsEnabled {
			t.Errorf("older update overwrote newer: %+v", a)
		}
		// An update of the same second whose previous values are the stored
		// state follows it, and applies.
		mustDeliver(t, st, stripefixture.Options{Type: "account.updated", Created: at(20),
			Mutate: set("charges_enabled", true, "payouts_enabled", false), Previous: map[string]any{"payouts_enabled": true}})
		if a, _ := account(t, st); a.PayoutsEnabled {
			t.Error("a later update of the same second did not apply")
		}
	})
	t.Run("older capability status after newer", func(t *testing.T) {
		t.Parallel()
		st := setup(t)
		mustDeliver(t, st, stripefixture.Options{Type: "capability.updated", Created: at(20), Mutate: set("status", "active")})
		mustDeliver(t, st, stripefixture.Options{Type: "capability.updated", Created: at(10), Mutate: set("status", "inactive")})
		if _, caps := account(t, st); caps["card_payments"] != "active" {
			t.Errorf("card_payments = %s, want active", caps["card_payments"])
		}
	})
	t.Run("older update to one capability after newer one to another", func(t *testing.T) {
		t.Parallel()
		st := setup(t)
		mustDeliver(t, st, stripefixture.Options{Type: "capability.updated", Created: at(20), Mutate: set("id", "card_payments", "status", "active")})
		mustDeliver(t, st, stripefixture.Options{Type: "capability.updated", Created: at(10), Mutate: set("id", "transfers", "status", "pending")})
		if _, caps := account(t, st); caps["card_payments"] != "active" || caps["transfers"] != "pending" {
			t.Errorf("capabilities = %v, want card_payments active and transfers pending", caps)
		}
	})
	t.Run("older account update keeps a newer capability", func(t *testing.T) {
		t.Parallel()
		st := setup(t)
		mustDeliver(t, st, stripefixture.Options{Type: "capability.updated", Created: at(20), Mutate: set("id", "card_payments", "status", "inactive")})
		mustDeliver(t, st, stripefixture.Options{Type: "account.updated", Created: at(10), Mutate: set("charges_enabled", true)})
		a, caps := account(t, st)
		if !a.ChargesEnabled {
			t.Error("account fields of the first account.updated not applied")
		}
		if caps["card_payments"] != "inactive" || caps["transfers"] != "active" {
			t.Errorf("capabilities = %v, want card_payments inactive (newer) and transfers active", caps)
		}
	})
	t.Run("older external account update after newer, and after deletion", func(t *testing.T) {
		t.Parallel()
		st := setup(t)
		mustDeliver(t, st, stripefixture.Options{Type: "account.external_account.updated", Created: at(20), Mutate: set("status", "verified")})
		mustDeliver(t, st, stripefixture.Options{Type: "account.external_account.created", Created: at(10), Mutate: set("status", "new")})
		if r := externals(t, st)[0]; str(r.Status) != "verified" {
			t.Errorf("status = %s, want verified", str(r.Status))
		}
		mustDeliver(t, st, stripefixture.Options{Type: "account.external_account.deleted", Created: at(30), Mutate: set("status", "verified")})
		mustDeliver(t, st, stripefixture.Options{Type: "account.external_account.updated", Created: at(25), Mutate: set("status", "errored")})
		if r := externals(t, st)[0]; r.DeletedAt == nil || str(r.Status) != "verified" {
			t.Errorf("older update changed a deleted account: %+v", r)
		}
	})
}

// An account.updated whose object lacks `capabilities` says nothing about
// them: the stored ones stay. A present map, even empty, is the whole set.
func TestAccountUpdatedWithoutCapabilitiesKeepsThem(t *testing.T) {
	t.Parallel()
	st := setup(t)
	mustDeliver(t, st, stripefixture.Options{Type: "account.updated", Created: at(10),
		Mutate: set("capabilities", map[string]any{"card_payments": "active", "transfers": "pending"})})
	mustDeliver(t, st, stripefixture.Options{Type: "account.updated", Created: at(20), Mutate: func(o map[string]any) {
		delete(o, "capabilities")
		o["charges_enabled"] = true
	}})
	a, caps := account(t, st)
	if !a.ChargesEnabled {
		t.Error("the account fields of the newer update were not applied")
	}
	if diff := cmp.Diff(map[string]string{"card_payments": "active", "transfers": "pending"}, caps); diff != "" {
		t.Errorf("an update without capabilities changed them (-want +got):\n%s", diff)
	}
	mustDeliver(t, st, stripefixture.Options{Type: "account.updated", Created: at(30), Mutate: set("capabilities", nil)})
	if _, caps := account(t, st); len(caps) != 2 {
		t.Errorf("capabilities: null wiped them: %v", caps)
	}
	mustDeliver(t, st, stripefixture.Options{Type: "account.updated", Created: at(40), Mutate: set("capabilities", map[string]any{})})
	if _, caps := account(t, st); len(caps) != 0 {
		t.Errorf("an empty capabilities map (the whole set: none) left %v", caps)
	}
}

func TestPoisonEventIsRecordedAndRolledBack(t *testing.T) {
	t.Parallel()
	st := setup(t)
	// One event delivered twice: one created time (its row id is made of it).
	o := stripefixture.Options{Type: "account.updated", ID: "evt_poison", Account: acct, Mutate: set("charges_enabled", "yes"),
		Created: time.Now()}
	for attempt := 1; attempt <= 2; attempt++ {
		if _, err := deliver(t, st, o); err == nil {
			t.Fatal("a poison event was applied")
		}
	}
	row, err := st.EventByStripeID(context.Background(), "evt_poison")
	if err != nil {
		t.Fatal(err)
	}
	if row.Processed || row.RetryCount != 2 || row.Error == nil {
		t.Errorf("row = processed %v, retry_count %d, error %v; want false, 2, set", row.Processed, row.RetryCount, row.Error)
	}
	if _, err := st.Account(context.Background(), acct); !store.IsNotFound(err) {
		t.Errorf("a failed handler left an account row: %v", err)
	}
}

// Parse reads the envelope in one pass and hands out data.object as the
// payload's own bytes, whatever the spacing, without a copy.
func TestParseEnvelope(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		payload []byte
		created time.Time
	}{
		{stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_parse", Account: acct, Created: at(7)}), at(7)},
		{[]byte(" {\"id\" : \"evt_parse\", \"type\":\"account.updated\", \"account\": \"" + acct + "\",\n \"created\": 1700000000,\n \"data\" : { \"object\" :  {\"id\": \"" + acct + "\"} } }"), at(0)},
	} {
		payload := c.payload
		e, err := handler.Parse(payload)
		if err != nil {
			t.Fatal(err)
		}
		if e.ID != "evt_parse" || e.Type != "account.updated" || e.Account != acct {
			t.Errorf("envelope = %+v", e)
		}
		if !e.Created.Equal(c.created) || e.Created.Location() != time.UTC {
			t.Errorf("created = %v, want %v in UTC", e.Created, c.created.UTC())
		}
		var obj struct{ ID string }
		if err := json.Unmarshal(e.Object, &obj); err != nil || obj.ID != acct {
			t.Errorf("data.object = %s (%v)", e.Object, err)
		}
		start, end := &payload[0], &payload[len(payload)-1]
		if at := &e.Object[0]; uintptr(unsafe.Pointer(at)) < uintptr(unsafe.Pointer(start)) || uintptr(unsafe.Pointer(at)) > uintptr(unsafe.Pointer(end)) {
			t.Error("data.object is a copy, not the payload's bytes")
		}
	}
	for _, bad := range []string{`[]`, `{"id":"evt_1"}`, `{"id":1,"type":"x"}`, `{"id":"evt_1","type":"x","created":"yesterday"}`} {
		if _, err := handler.Parse([]byte(bad)); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
}

// AccountIn names the account of an event whose handler will run in the
// deployment's mode, the row the worker creates and locks before it runs;
// no account for a type without a handler, an event of the other mode or
// a payload that does not parse.
func TestAccountIn(t *testing.T) {
	t.Parallel()
	live := stripefixture.Options{Type: "account.updated", Account: "acct_live", Live: true}
	test := stripefixture.Options{Type: "capability.updated", Account: "acct_test"}
	for _, c := range []struct {
		mode string
		row  store.WebhookEvent
		want string
	}{
		{"any", event(t, live), "acct_live"},
		{"live", event(t, live), "acct_live"},
		{"test", event(t, live), ""},
		{"any", event(t, test), "acct_test"},
		{"live", event(t, test), ""},
		{"any", event(t, stripefixture.Options{Type: "account.external_account.created", Account: "acct_ext"}), "acct_ext"},
		{"any", store.WebhookEvent{EventType: "charge.succeeded", Payload: []byte(`{"id":"evt_c","type":"charge.succeeded","account":"acct_c"}`)}, ""},
		{"any", store.WebhookEvent{EventType: "account.updated", Payload: []byte(`{"type":"account.updated","account":"acct_bad"}`)}, ""},
		{"any", event(t, stripefixture.Options{Type: "account.updated", Account: "acct_" + strings.Repeat("x", 251)}), ""},
		{"any", event(t, stripefixture.Options{Type: "account.updated", Account: "acct_nul\x00"}), ""},
	} {
		if got := handler.AccountIn(config.Livemode{Mode: c.mode})(c.row); got != c.want {
			t.Errorf("%s in mode %s: %q, want %q", c.row.EventType, c.mode, got, c.want)
		}
	}
}

// wantDeauthorized checks the account's deauthorized_at: want, or none
// (connected) when want is zero.
func wantDeauthorized(t *testing.T, st *store.Store, step string, want time.Time) {
	t.Helper()
	a, _ := account(t, st)
	got := "none"
	if a.DeauthorizedAt != nil {
		got = a.DeauthorizedAt.UTC().String()
	}
	switch {
	case want.IsZero() && a.DeauthorizedAt != nil:
		t.Errorf("%s: deauthorized_at = %s, want none (connected)", step, got)
	case !want.IsZero() && (a.DeauthorizedAt == nil || !a.DeauthorizedAt.Equal(want)):
		t.Errorf("%s: deauthorized_at = %s, want %s", step, got, want.UTC())
	}
}

// account.application.deauthorized and .authorized follow the out-of-order
// rule between themselves: an older one never undoes a newer one.
func TestAccountDeauthorizedAndAuthorizedOutOfOrder(t *testing.T) {
	t.Parallel()
	st := setup(t)
	mustDeliver(t, st, stripefixture.Options{Type: "account.application.deauthorized", Created: at(20)})
	a, caps := account(t, st)
	if a.ChargesEnabled || a.PayoutsEnabled || a.DetailsSubmitted || len(caps) != 0 {
		t.Errorf("a row created by a deauthorization must have its booleans false and no capabilities: %+v", a)
	}
	wantDeauthorized(t, st, "deauthorized at 20", at(20))
	mustDeliver(t, st, stripefixture.Options{Type: "account.application.authorized", Created: at(10)})
	wantDeauthorized(t, st, "then authorized at 10", at(20))
	mustDeliver(t, st, stripefixture.Options{Type: "account.application.authorized", Created: at(30)})
	wantDeauthorized(t, st, "then authorized at 30", time.Time{})
	mustDeliver(t, st, stripefixture.Options{Type: "account.application.deauthorized", Created: at(25)})
	wantDeauthorized(t, st, "then deauthorized at 25", time.Time{})
	// Equal seconds apply in processing order.
	mustDeliver(t, st, stripefixture.Options{Type: "account.application.deauthorized", Created: at(30)})
	wantDeauthorized(t, st, "then deauthorized at 30", at(30))
	mustDeliver(t, st, stripefixture.Options{Type: "account.application.authorized", Created: at(30)})
	wantDeauthorized(t, st, "then authorized at 30", time.Time{})
	if a, _ := account(t, st); a.AuthorizationEventCreated == nil || !a.AuthorizationEventCreated.Equal(at(30)) {
		t.Errorf("authorization_event_created = %v, want %v", a.AuthorizationEventCreated, at(30).UTC())
	}
	// The account is the envelope's: without one the event fails, and is
	// retried, rather than being marked processed without effect.
	noAccount := `{"id":"evt_noacct","type":"account.application.deauthorized","created":1700000040,` +
		`"data":{"object":{"id":"ca_QhBd9ZJvNqXZ8a3rG6cTfW2mK5pLsYxE","object":"application"}}}`
	if err := handler.Apply(context.Background(), &store.Tx{}, store.WebhookEvent{EventType: "account.application.deauthorized",
		Payload: store.JSON(noAccount)}); err == nil {
		t.Error("an event without a connected account was applied")
	}
}

// The account's fields and its authorization are separate objects: writing
// one leaves the other as it is.
func TestAccountUpdatesKeepDeauthorization(t *testing.T) {
	t.Parallel()
	st := setup(t)
	mustDeliver(t, st, stripefixture.Options{Type: "account.updated", Created: at(10), Mutate: set("charges_enabled", true)})
	mustDeliver(t, st, stripefixture.Options{Type: "account.application.deauthorized", Created: at(20)})
	if a, caps := account(t, st); !a.ChargesEnabled || len(caps) != 2 {
		t.Errorf("the deauthorization changed the account's fields: %+v, capabilities %v", a, caps)
	}
	mustDeliver(t, st, stripefixture.Options{Type: "account.updated", Created: at(30),
		Mutate: set("charges_enabled", false, "payouts_enabled", true)})
	mustDeliver(t, st, stripefixture.Options{Type: "capability.updated", Created: at(40), Mutate: set("status", "inactive")})
	wantDeauthorized(t, st, "after account.updated and capability.updated", at(20))
	a, caps := account(t, st)
	if a.ChargesEnabled || !a.PayoutsEnabled || caps["card_payments"] != "inactive" {
		t.Errorf("updates after the deauthorization not applied: %+v, capabilities %v", a, caps)
	}
}

// Several events of one account in one transaction each see what the
// earlier ones wrote, the authorization columns included, whether the
// account's row is new, read by the handler, or locked up front by a group.
func TestAuthorizationInOneTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("one transaction", func(t *testing.T) {
		t.Parallel()
		st := setup(t)
		applyAll := func(events ...store.WebhookEvent) {
			t.Helper()
			apply := func(ctx context.Context, tx *store.Tx, _ store.WebhookEvent) error {
				for _, e := range events {
					if err := handler.Apply(ctx, tx, e); err != nil {
						return err
					}
				}
				return nil
			}
			carrier := insert(t, st, stripefixture.Options{Type: "plan.created"})
			if out, _, err := st.ProcessEvent(ctx, carrier, store.Attempt{}, apply); err != nil || out != store.Applied {
				t.Fatalf("outcome %v, error %v", out, err)
			}
		}
		// A new account: its row is inserted by the first event.
		applyAll(
			event(t, stripefixture.Options{Type: "account.updated", Created: at(10), Mutate: set("charges_enabled", true)}),
			event(t, stripefixture.Options{Type: "account.application.deauthorized", Created: at(20)}),
			event(t, stripefixture.Options{Type: "account.updated", Created: at(30), Mutate: set("charges_enabled", true, "payouts_enabled", true)}),
			event(t, stripefixture.Options{Type: "capability.updated", Created: at(31), Mutate: set("status", "pending")}),
		)
		wantDeauthorized(t, st, "first transaction", at(20))
		if a, caps := account(t, st); !a.ChargesEnabled || !a.PayoutsEnabled || caps["card_payments"] != "pending" {
			t.Errorf("first transaction: %+v, capabilities %v", a, caps)
		}
		// An existing account: its row is read, authorization included.
		applyAll(
			event(t, stripefixture.Options{Type: "account.application.authorized", Created: at(15)}),
			event(t, stripefixture.Options{Type: "account.updated", Created: at(40), Mutate: set("charges_enabled", false)}),
			event(t, stripefixture.Options{Type: "account.application.authorized", Created: at(50)}),
			event(t, stripefixture.Options{Type: "account.application.deauthorized", Created: at(45)}),
			event(t, stripefixture.Options{Type: "account.updated", Created: at(60), Mutate: set("details_submitted", true)}),
		)
		wantDeauthorized(t, st, "second transaction", time.Time{})
		a, _ := account(t, st)
		if a.AuthorizationEventCreated == nil || !a.AuthorizationEventCreated.Equal(at(50)) || !a.DetailsSubmitted {
			t.Errorf("second transaction: %+v", a)
		}
	})
	for name, accountOf := range map[string]func(store.WebhookEvent) string{
		"one group, accounts locked as handlers ask": nil,
		"one group, accounts created up front":       handler.AccountIn(config.Livemode{Mode: "any"}),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := setup(t)
			// group applies the events in one group: the first one's job, the
			// others claimed ahead of theirs by a fresh Applier, which looks
			// ahead on its first group.
			group := func(opts ...stripefixture.Options) {
				t.Helper()
				ids := make([]string, len(opts))
				for i, o := range opts {
					ids[i] = insert(t, st, o)
				}
				var mu sync.Mutex
				ahead := 0
				ap := st.NewApplier(handler.Apply, store.ApplierOptions{MaxJobs: 1, Ahead: 10, Timeout: 30 * time.Second,
					AppliedAhead: func(context.Context, store.WebhookEvent) { mu.Lock(); ahead++; mu.Unlock() }, AccountOf: accountOf})
				out, _, err := ap.Process(ctx, ids[0], store.Attempt{})
				ap.Close()
				if err != nil || out != store.Applied {
					t.Fatalf("outcome %v, error %v", out, err)
				}
				mu.Lock()
				defer mu.Unlock()
				if ahead != len(opts)-1 {
					t.Fatalf("%d events applied ahead, want %d: not one group", ahead, len(opts)-1)
				}
			}
			group(
				stripefixture.Options{Type: "account.updated", Created: at(10), Mutate: set("charges_enabled", true)},
				stripefixture.Options{Type: "account.application.deauthorized", Created: at(20)},
				stripefixture.Options{Type: "account.updated", Created: at(30), Mutate: set("payouts_enabled", true)},
			)
			wantDeauthorized(t, st, "first group", at(20))
			if a, _ := account(t, st); !a.PayoutsEnabled {
				t.Errorf("first group: %+v", a)
			}
			// The row now exists and the group locks it up front.
			group(
				stripefixture.Options{Type: "account.application.authorized", Created: at(15)},
				stripefixture.Options{Type: "account.updated", Created: at(40), Mutate: set("details_submitted", true)},
			)
			wantDeauthorized(t, st, "second group", at(20))
			if a, _ := account(t, st); !a.DetailsSubmitted {
				t.Errorf("second group: %+v", a)
			}
		})
	}
}
