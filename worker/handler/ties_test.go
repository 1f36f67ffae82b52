package handler_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/worker/handler"
)

// tieCase is two events of one object created in the same second: earlier,
// then later (whose previous_attributes are earlier's new values).
type tieCase struct {
	name           string
	earlier, later stripefixture.Options
	// state is the object's stored state; want is the later event's.
	state func(t *testing.T, st *store.Store) string
	want  string
	// ties are the ties besides the object's own that each event met.
	ties map[store.Tie]int
}

func tieCases() []tieCase {
	return []tieCase{{
		name: "account.updated, charges_enabled false then true",
		earlier: stripefixture.Options{Type: "account.updated", Created: at(20),
			Mutate: set("charges_enabled", false, "details_submitted", true), Previous: map[string]any{"details_submitted": false}},
		later: stripefixture.Options{Type: "account.updated", Created: at(20),
			Mutate: set("charges_enabled", true, "details_submitted", true), Previous: map[string]any{"charges_enabled": false}},
		state: func(t *testing.T, st *store.Store) string {
			a, _ := account(t, st)
			return fmt.Sprintf("charges_enabled %v, details_submitted %v", a.ChargesEnabled, a.DetailsSubmitted)
		},
		want: "charges_enabled true, details_submitted true",
		// Both carry the account's capabilities, unchanged.
		ties: map[store.Tie]int{{Object: store.TieCapability, Settled: store.TieSameState}: 2},
	}, {
		name: "capability.updated, inactive then active",
		earlier: stripefixture.Options{Type: "capability.updated", Created: at(20),
			Mutate: set("status", "inactive"), Previous: map[string]any{"status": "pending"}},
		later: stripefixture.Options{Type: "capability.updated", Created: at(20),
			Mutate: set("status", "active"), Previous: map[string]any{"status": "inactive"}},
		state: func(t *testing.T, st *store.Store) string {
			_, caps := account(t, st)
			return caps["card_payments"]
		},
		want: "active",
	}, {
		name:    "external account created new, then updated verified",
		earlier: stripefixture.Options{Type: "account.external_account.created", Created: at(20), Mutate: set("status", "new")},
		later: stripefixture.Options{Type: "account.external_account.updated", Created: at(20),
			Mutate: set("status", "verified"), Previous: map[string]any{"status": "new"}},
		state: func(t *testing.T, st *store.Store) string {
			rows := externals(t, st)
			if len(rows) != 1 {
				t.Fatalf("%d external accounts, want 1", len(rows))
			}
			return str(rows[0].Status)
		},
		want: "verified",
	}}
}

func process(t *testing.T, st *store.Store, id string, apply store.ApplyFunc) {
	t.Helper()
	if out, _, err := st.ProcessEvent(context.Background(), id, store.Attempt{}, apply); err != nil || out != store.Applied {
		t.Fatalf("outcome %v, error %v", out, err)
	}
}

func replay(t *testing.T, st *store.Store, id string, apply store.ApplyFunc) {
	t.Helper()
	if _, _, err := st.ReplayEvent(context.Background(), id, apply); err != nil {
		t.Fatalf("replay: %v", err)
	}
}

// Two events of one object created in the same second, delivered in
// either order, leave the later one's state; so does a replay of the
// earlier one afterwards.
func TestSameSecondEventsLeaveTheLaterState(t *testing.T) {
	t.Parallel()
	for _, c := range tieCases() {
		for _, laterFirst := range []bool{false, true} {
			order := "earlier then later"
			if laterFirst {
				order = "later then earlier"
			}
			t.Run(c.name+", "+order, func(t *testing.T) {
				t.Parallel()
				st := setup(t)
				earlier, later := insert(t, st, c.earlier), insert(t, st, c.later)
				ids := []string{earlier, later}
				if laterFirst {
					ids = []string{later, earlier}
				}
				for _, id := range ids {
					process(t, st, id, handler.Apply)
				}
				both := c.state(t, st)
				if both != c.want {
					t.Errorf("after both: %s, want %s (the later event's)", both, c.want)
				}
				replay(t, st, earlier, handler.Apply)
				replayed := c.state(t, st)
				if replayed != c.want {
					t.Errorf("after a replay of the earlier event: %s, want %s", replayed, c.want)
				}
				t.Logf("after both: %s; after a replay of the earlier: %s", both, replayed)
			})
		}
	}
}

// tieRecorder collects the ties reported to handler.Options.Tie.
type tieRecorder struct {
	mu   sync.Mutex
	ties map[store.Tie]int
}

func (r *tieRecorder) record(t store.Tie) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ties == nil {
		r.ties = map[store.Tie]int{}
	}
	r.ties[t]++
}

func (r *tieRecorder) got() map[store.Tie]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ties
}

// Each tie is reported once, after its commit, with how it was settled:
// the later event after the earlier one follows it (chained); the earlier
// one after the later, or replayed, is shown to be earlier.
func TestSameSecondTiesAreReportedWithHowTheyWereSettled(t *testing.T) {
	t.Parallel()
	for _, c := range tieCases() {
		for _, laterFirst := range []bool{false, true} {
			name := c.name + ", earlier then later"
			if laterFirst {
				name = c.name + ", later then earlier"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				st := setup(t)
				rec := &tieRecorder{}
				apply := handler.ApplyWith(handler.Options{Tie: rec.record})
				earlier, later := insert(t, st, c.earlier), insert(t, st, c.later)
				object := map[string]string{"account.updated": store.TieAccount, "capability.updated": store.TieCapability}[c.later.Type]
				if object == "" {
					object = store.TieExternalAccount
				}
				want := map[store.Tie]int{{Object: object, Settled: store.TieEarlier}: 2} // the second delivery and the replay
				if laterFirst {
					process(t, st, later, apply)
					process(t, st, earlier, apply)
				} else {
					process(t, st, earlier, apply)
					process(t, st, later, apply)
					want = map[store.Tie]int{{Object: object, Settled: store.TieChained}: 1, {Object: object, Settled: store.TieEarlier}: 1}
				}
				replay(t, st, earlier, apply)
				for tie, n := range c.ties {
					want[tie] += 2 * n // each tied event met them
				}
				if diff := cmp.Diff(want, rec.got()); diff != "" {
					t.Errorf("ties (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// A tie the events do not settle (a change undone within the second, or
// events that do not chain: one between them is missing) keeps the stored
// state; with ResyncTies (an API key) it also requests the account's
// resync, with the tie's second; without, none.
func TestSameSecondTieNotSettledKeepsTheStoredState(t *testing.T) {
	t.Parallel()
	for _, resync := range []bool{false, true} {
		t.Run(fmt.Sprintf("resync %v", resync), func(t *testing.T) {
			t.Parallel()
			st := setup(t)
			rec := &tieRecorder{}
			apply := handler.ApplyWith(handler.Options{ResyncTies: resync, Tie: rec.record})
			// card_payments inactive -> pending -> inactive within one second.
			process(t, st, insert(t, st, stripefixture.Options{Type: "capability.updated", Created: at(20),
				Mutate: set("status", "pending"), Previous: map[string]any{"status": "inactive"}}), apply)
			process(t, st, insert(t, st, stripefixture.Options{Type: "capability.updated", Created: at(20),
				Mutate: set("status", "inactive"), Previous: map[string]any{"status": "pending"}}), apply)
			if _, caps := account(t, st); caps["card_payments"] != "pending" {
				t.Errorf("card_payments = %s, want pending (the stored state kept)", caps["card_payments"])
			}
			// Of another account, three updates of one second, the middle one
			// missing; the second says what the middle one did not.
			const other = "acct_handlertest0002"
			process(t, st, insert(t, st, stripefixture.Options{Type: "account.updated", Account: other, Created: at(20),
				Mutate: set("details_submitted", true), Previous: map[string]any{"details_submitted": false}}), apply)
			process(t, st, insert(t, st, stripefixture.Options{Type: "account.updated", Account: other, Created: at(20),
				Mutate:   set("details_submitted", true, "charges_enabled", true, "payouts_enabled", true),
				Previous: map[string]any{"payouts_enabled": false}}), apply)
			if a, err := st.Account(context.Background(), other); err != nil || a.ChargesEnabled || a.PayoutsEnabled || !a.DetailsSubmitted {
				t.Errorf("account = charges %v payouts %v details %v (%v), want false false true (the stored state kept)",
					a.ChargesEnabled, a.PayoutsEnabled, a.DetailsSubmitted, err)
			}

			settled := store.TieKept
			if resync {
				settled = store.TieResync
			}
			// The capabilities of the second account.updated, unchanged, are
			// the state stored by the first.
			want := map[store.Tie]int{{Object: store.TieCapability, Settled: settled}: 1, {Object: store.TieAccount, Settled: settled}: 1,
				{Object: store.TieCapability, Settled: store.TieSameState}: 2}
			if diff := cmp.Diff(want, rec.got()); diff != "" {
				t.Errorf("ties (-want +got):\n%s", diff)
			}
			requested, err := st.DueResyncRequests(context.Background(), time.Now().Add(time.Minute), 10)
			if err != nil {
				t.Fatal(err)
			}
			var tiedAt []time.Time
			st.DB().Raw("SELECT tied_at FROM resync_requests").Scan(&tiedAt)
			switch {
			case resync && (!cmp.Equal([]string{acct, other}, requested) || !cmp.Equal([]time.Time{at(20), at(20)}, tiedAt)):
				t.Errorf("resync requests = %v, tied at %v; want %s and %s, tied at %v", requested, tiedAt, acct, other, at(20).UTC())
			case !resync && len(requested) != 0:
				t.Errorf("resync requested without an API key: %v", requested)
			}
		})
	}
}

// A tie met in a group that is then rolled back (another event of the
// group failed) and applied again on its own is reported once.
func TestTieOfARolledBackGroupIsReportedOnce(t *testing.T) {
	t.Parallel()
	st := setup(t)
	rec := &tieRecorder{}
	apply := handler.ApplyWith(handler.Options{Tie: rec.record})
	process(t, st, insert(t, st, stripefixture.Options{Type: "capability.updated", Created: at(20),
		Mutate: set("status", "active"), Previous: map[string]any{"status": "inactive"}}), apply)
	earlier := insert(t, st, stripefixture.Options{Type: "capability.updated", Created: at(20),
		Mutate: set("status", "inactive"), Previous: map[string]any{"status": "pending"}})
	// Of the same account, so applied after the tie in the group.
	poison := insert(t, st, stripefixture.Options{Type: "account.updated", Created: at(30), Mutate: set("charges_enabled", "yes")})
	ap := st.NewApplier(apply, store.ApplierOptions{MaxJobs: 1, Ahead: 10, Timeout: 30 * time.Second})
	out, _, err := ap.Process(context.Background(), earlier, store.Attempt{})
	ap.Close()
	if err != nil || out != store.Applied {
		t.Fatalf("outcome %v, error %v", out, err)
	}
	if row, err := st.EventByStripeID(context.Background(), eventID(t, st, poison)); err != nil || row.Processed {
		t.Fatalf("the poison event was applied (%v): not the group under test", err)
	}
	want := map[store.Tie]int{{Object: store.TieCapability, Settled: store.TieEarlier}: 1}
	if diff := cmp.Diff(want, rec.got()); diff != "" {
		t.Errorf("ties (-want +got):\n%s", diff)
	}
}

// eventID returns the Stripe event id of the row webhookID.
func eventID(t *testing.T, st *store.Store, webhookID string) string {
	t.Helper()
	var id string
	if err := st.DB().Raw("SELECT stripe_event_id FROM webhook_events WHERE id = ?", webhookID).Scan(&id).Error; err != nil {
		t.Fatal(err)
	}
	return id
}

// An external account once deleted stays deleted: an update of a later
// second leaves deleted_at set, and one of the deletion's own second is
// kept out (the deletion wins the tie).
func TestExternalAccountStaysDeleted(t *testing.T) {
	t.Parallel()
	for _, updated := range []int64{35, 30} {
		t.Run(fmt.Sprintf("updated at %d", updated), func(t *testing.T) {
			t.Parallel()
			st := setup(t)
			mustDeliver(t, st, stripefixture.Options{Type: "account.external_account.deleted", Created: at(30), Mutate: set("status", "new")})
			mustDeliver(t, st, stripefixture.Options{Type: "account.external_account.updated", Created: at(updated),
				Mutate: set("status", "verified"), Previous: map[string]any{"status": "new"}})
			r := externals(t, st)[0]
			if r.DeletedAt == nil || !r.DeletedAt.Equal(at(30)) {
				t.Errorf("deleted_at = %v, want %v", r.DeletedAt, at(30).UTC())
			}
			if updated == 30 && str(r.Status) != "new" {
				t.Errorf("status = %s: an update of the deletion's second was applied", str(r.Status))
			}
		})
	}
}

// A last4 longer than four characters is stored as its last four, and the
// event is processed (the column holds four).
func TestLongLast4IsCutToTheLastFour(t *testing.T) {
	t.Parallel()
	st := setup(t)
	mustDeliver(t, st, stripefixture.Options{Type: "account.external_account.created", Created: at(1), Mutate: set("last4", "123456")})
	if r := externals(t, st)[0]; str(r.Last4) != "3456" {
		t.Errorf("last4 = %s, want 3456", str(r.Last4))
	}
}

// A replay of the event that wrote an object restores what it wrote if the
// stored state was changed otherwise since (a bug, a hand edit): its
// previous values are those the object kept of it.
func TestReplayOfTheEventThatWroteAnObjectRestoresIt(t *testing.T) {
	t.Parallel()
	st := setup(t)
	rec := &tieRecorder{}
	apply := handler.ApplyWith(handler.Options{Tie: rec.record})
	id := insert(t, st, stripefixture.Options{Type: "capability.updated", Created: at(20),
		Mutate: set("status", "active"), Previous: map[string]any{"status": "inactive"}})
	process(t, st, id, apply)
	if err := st.DB().Exec(`UPDATE stripe_connected_accounts SET capabilities = '{"card_payments":"pending"}'`).Error; err != nil {
		t.Fatal(err)
	}
	replay(t, st, id, apply)
	if _, caps := account(t, st); caps["card_payments"] != "active" {
		t.Errorf("card_payments = %s after the replay, want active", caps["card_payments"])
	}
	want := map[store.Tie]int{{Object: store.TieCapability, Settled: store.TieSameEvent}: 1}
	if diff := cmp.Diff(want, rec.got()); diff != "" {
		t.Errorf("ties (-want +got):\n%s", diff)
	}
}
