package replay

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/worker/internal/testkit"
)

// One event by its id: applied, or failed with its error, or not replayed
// because it is of the other mode or not stored at all.
func TestEventSaysWhatItDid(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	live := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_rp_live", Account: "acct_rp",
		Live: true, Mutate: testkit.Set("charges_enabled", true)})
	test := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_rp_test", Account: "acct_rp_test"})
	broken := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_rp_broken", Account: "acct_rp",
		Live: true, Mutate: testkit.Set("charges_enabled", "yes")})
	for _, p := range [][]byte{live, test, broken} {
		insert(t, b, p)
	}
	r := New(b.Store, config.Livemode{Mode: "live"})
	ctx := context.Background()
	for id, want := range map[string]Outcome{"evt_rp_live": Applied, "evt_rp_test": OtherMode, "evt_rp_broken": Failed,
		"evt_rp_unknown": NotFound} {
		res := r.Event(ctx, id)
		if res.Outcome != want || (res.Err != nil) != (want == Failed) {
			t.Errorf("%s: %v, %v; want %v", id, res.Outcome, res.Err, want)
		}
	}
	if a, err := b.Store.Account(ctx, "acct_rp"); err != nil || !a.ChargesEnabled {
		t.Errorf("the applied replay left the account %+v, %v", a, err)
	}
	if _, err := b.Store.Account(ctx, "acct_rp_test"); err == nil {
		t.Error("the event of the other mode was applied")
	}
}

// Matching replays the events a filter selects, and only those of the
// deployment's mode.
func TestMatchingReplaysTheFilteredEventsOfTheMode(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	for _, o := range []stripefixture.Options{
		{Type: "account.updated", ID: "evt_rm_1", Live: true},
		{Type: "account.updated", ID: "evt_rm_2", Live: true},
		{Type: "capability.updated", ID: "evt_rm_3", Live: true},
		{Type: "account.updated", ID: "evt_rm_test"},
	} {
		insert(t, b, stripefixture.MustEvent(o))
	}
	var got []string
	err := New(b.Store, config.Livemode{Mode: "live"}).Matching(context.Background(),
		Filter{Since: time.Now().Add(-time.Hour), EventType: "account.updated"},
		func(res Result) {
			if res.Outcome != Applied {
				t.Errorf("%s: %v %v", res.StripeEventID, res.Outcome, res.Err)
			}
			got = append(got, res.StripeEventID)
		})
	if err != nil || len(got) != 2 || got[0] != "evt_rm_1" || got[1] != "evt_rm_2" {
		t.Errorf("replayed %v, %v; want evt_rm_1 and evt_rm_2", got, err)
	}
}

func insert(t *testing.T, b *testkit.Backend, payload []byte) {
	t.Helper()
	var e struct {
		Livemode bool `json:"livemode"`
	}
	_ = json.Unmarshal(payload, &e)
	_, err := b.Store.InsertEvent(context.Background(), store.NewEvent{StripeEventID: testkit.EventID(payload),
		EventType: eventType(payload), Payload: payload, ReceivedAt: time.Now(), Livemode: e.Livemode})
	if err != nil {
		t.Fatal(err)
	}
}

func eventType(payload []byte) string {
	var e struct{ Type string }
	_ = json.Unmarshal(payload, &e)
	return e.Type
}
