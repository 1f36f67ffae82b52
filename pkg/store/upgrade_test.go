package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
)

// legacyEvent is a row of the table as it was before partitioning.
type legacyEvent struct {
	stripeID string
	payload  []byte
	state    string // waiting, failing, dead, processed
}

// legacyDatabase is a database at the schema before migration 00011,
// holding n events of each state, their Stripe `created` spread over the
// last ten days.
func legacyDatabase(t *testing.T, n int) (string, []legacyEvent) {
	t.Helper()
	ctx := context.Background()
	url := testenv.EmptyDatabase(t, "")
	if _, err := store.Migrate(ctx, url, store.MigrateOptions{UpTo: 10}); err != nil {
		t.Fatal(err)
	}
	conn := connectPgx(t, url)
	var events []legacyEvent
	batch := &pgx.Batch{}
	for i := range 4 * n {
		state := []string{"waiting", "failing", "dead", "processed"}[i%4]
		created := time.Now().Add(-time.Duration(i%10) * 24 * time.Hour)
		p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Created: created,
			Account: fmt.Sprintf("acct_up_%d", i%7)})
		e := legacyEvent{stripeID: stripeID(t, p), payload: p, state: state}
		events = append(events, e)
		batch.Queue(`INSERT INTO webhook_events (stripe_event_id, event_type, payload, livemode, stripe_account_id,
				processed, processed_at, error, retry_count, dead_at, next_attempt_at)
			VALUES ($1, 'account.updated', $2::jsonb, false, $3, $4 = 'processed', CASE WHEN $4 = 'processed' THEN now() END,
				CASE WHEN $4 IN ('failing', 'dead') THEN 'handler failed' END, CASE WHEN $4 IN ('failing', 'dead') THEN 2 ELSE 0 END,
				CASE WHEN $4 = 'dead' THEN now() END, CASE WHEN $4 = 'failing' THEN now() + interval '1 hour' END)`,
			e.stripeID, string(p), fmt.Sprintf("acct_up_%d", i%7), state)
	}
	if err := conn.SendBatch(ctx, batch).Close(); err != nil {
		t.Fatal(err)
	}
	return url, events
}

func stripeID(t *testing.T, payload []byte) string {
	t.Helper()
	var e struct{ ID string }
	if err := jsonUnmarshal(payload, &e); err != nil {
		t.Fatal(err)
	}
	return e.ID
}

// checkUpgraded checks that every legacy event is in the partitioned table
// once, under the id its Stripe id and `created` give it, with its state
// and its payload as it was, and that exactly the unprocessed ones are
// pending, with their failure state.
func checkUpgraded(t *testing.T, url string, events []legacyEvent) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	conn := connectPgx(t, url)
	var kind string
	if err := conn.QueryRow(ctx, "SELECT relkind::text FROM pg_class WHERE relname = 'webhook_events'").Scan(&kind); err != nil || kind != "p" {
		t.Fatalf("webhook_events is of kind %q (%v), want p (partitioned)", kind, err)
	}
	var rows, pending int
	if err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM webhook_events), (SELECT count(*) FROM pending_events)").Scan(&rows, &pending); err != nil {
		t.Fatal(err)
	}
	wantPending := 0
	for _, e := range events {
		if e.state != "processed" {
			wantPending++
		}
	}
	if rows != len(events) || pending != wantPending {
		t.Errorf("%d rows and %d pending after the upgrade, want %d and %d", rows, pending, len(events), wantPending)
	}
	for _, e := range events {
		row, err := st.EventByStripeID(ctx, e.stripeID)
		if err != nil {
			t.Fatalf("%s: %v", e.stripeID, err)
		}
		if row.ID != store.EventID(e.payload) {
			t.Errorf("%s: id %s, want %s", e.stripeID, row.ID, store.EventID(e.payload))
		}
		if got := row.Status(); got != e.state {
			t.Errorf("%s: status %s after the upgrade, want %s", e.stripeID, got, e.state)
		}
		if !jsonEqual(row.Payload, e.payload) {
			t.Errorf("%s: payload changed in the upgrade", e.stripeID)
		}
	}
}

// A database at the schema before 00011, with waiting, failing, dead and
// processed events, is upgraded by Migrate: every event once, re-keyed,
// its state and payload kept, the unprocessed ones pending.
func TestUpgradeMovesEveryEventOnce(t *testing.T) {
	t.Parallel()
	url, events := legacyDatabase(t, 50)
	if _, err := store.Migrate(context.Background(), url, store.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	checkUpgraded(t, url, events)
}

// The upgrade killed part-way, first while it moves rows (after its
// first batch has committed), then again while its last step waits for
// the old table, and run a third time ends as an upgrade run in one go;
// and the deliveries the running ingest stored into the old table all the
// while are all in the new one.
func TestUpgradeKilledPartWayRunsAgain(t *testing.T) {
	t.Parallel()
	url, events := legacyDatabase(t, 10000) // 40,000 rows: eight batches of the move
	ctx := context.Background()
	admin := connectPgx(t, url)
	// Holding the old table in ROW EXCLUSIVE mode, as an ingest's INSERT
	// does, lets the move read it but keeps the switch from starting.
	table := connectPgx(t, url)
	if _, err := table.Exec(ctx, "BEGIN; LOCK TABLE webhook_events IN ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	delivered := make(chan []legacyEvent, 1)
	go func() { delivered <- deliverToLegacy(ctx, connectPgx(t, url), stop) }()

	// First cut: once a batch has committed, hold the move's cursor row so
	// that the next batch (or the switch) waits, and cut the session.
	done := migrateInBackground(url)
	testenv.Eventually(t, 60*time.Second, "the move's first batch committed", func() bool {
		select {
		case err := <-done:
			t.Fatalf("the migration ended (%v) before its first batch was seen", err)
		default:
		}
		var n int
		err := admin.QueryRow(ctx, "SELECT count(*) FROM sw_events_move").Scan(&n)
		return err == nil && n > 0
	})
	cursor := connectPgx(t, url)
	if _, err := cursor.Exec(ctx, "BEGIN; SELECT 1 FROM sw_events_move FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	moved := cutMigration(t, admin, done)
	t.Logf("first cut after %d of %d rows moved", moved, len(events))
	if _, err := cursor.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}

	// Second cut: the rerun moves the rest, and its switch waits for the
	// old table.
	done = migrateInBackground(url)
	testenv.Eventually(t, 60*time.Second, "the rerun's switch waiting for the old table", func() bool {
		var n int
		err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query ILIKE '%sw_switch_events%'`).Scan(&n)
		return err == nil && n > 0
	})
	cutMigration(t, admin, done)
	if _, err := table.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}

	if _, err := store.Migrate(ctx, url, store.MigrateOptions{}); err != nil {
		t.Fatalf("the migration run a third time: %v", err)
	}
	close(stop)
	more := <-delivered
	if len(more) == 0 {
		t.Error("no delivery was stored into the old table while the rows moved")
	}
	checkUpgraded(t, url, append(events, more...))
}

// migrateInBackground runs Migrate on url and sends its error.
func migrateInBackground(url string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := store.Migrate(context.Background(), url, store.MigrateOptions{})
		done <- err
	}()
	return done
}

// cutMigration waits for the migration's session to wait for a lock,
// terminates it, checks that the run failed and that the old table is
// still there, and returns how many rows the move had copied.
func cutMigration(t *testing.T, admin *pgx.Conn, done <-chan error) int {
	t.Helper()
	ctx := context.Background()
	var pid int
	testenv.Eventually(t, 60*time.Second, "the migration waiting for a lock", func() bool {
		err := admin.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query ILIKE 'CALL sw_%'`).Scan(&pid)
		return err == nil
	})
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("the migration finished although its session was cut")
	}
	var kind string
	if err := admin.QueryRow(ctx, "SELECT relkind::text FROM pg_class WHERE relname = 'webhook_events'").Scan(&kind); err != nil || kind != "r" {
		t.Fatalf("after the cut webhook_events is of kind %q (%v), want r: the old table", kind, err)
	}
	var moved int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM webhook_events_next").Scan(&moved); err != nil {
		t.Fatal(err)
	}
	return moved
}

// deliverToLegacy stores events into the old table as the ingest before
// the upgrade did, one at a time, until stop is closed or the table is
// gone, and returns those it stored.
func deliverToLegacy(ctx context.Context, conn *pgx.Conn, stop <-chan struct{}) []legacyEvent {
	var out []legacyEvent
	for i := 0; ; i++ {
		select {
		case <-stop:
			return out
		default:
		}
		p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: fmt.Sprintf("acct_live_%d", i%7)})
		var id string
		_ = jsonUnmarshalID(p, &id)
		_, err := conn.Exec(ctx, `INSERT INTO webhook_events (stripe_event_id, event_type, payload, livemode, stripe_account_id)
			VALUES ($1, 'account.updated', $2::jsonb, false, $3) ON CONFLICT (stripe_event_id) DO NOTHING`,
			id, string(p), fmt.Sprintf("acct_live_%d", i%7))
		if err != nil {
			return out // the table became the partitioned one: the old statement no longer fits
		}
		out = append(out, legacyEvent{stripeID: id, payload: p, state: "waiting"})
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// jsonUnmarshalID reads the top-level "id" of the JSON object b.
func jsonUnmarshalID(b []byte, id *string) error {
	var e struct{ ID string }
	err := json.Unmarshal(b, &e)
	*id = e.ID
	return err
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
