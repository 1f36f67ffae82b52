package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
)

// Upgrade is the time `worker migrate` takes to move a populated
// webhook_events to the partitioned table (migration 00011), and what a
// delivery stored meanwhile by the ingest of the version before saw.
type Upgrade struct {
	Rows    int     `json:"rows"`
	Seconds float64 `json:"seconds"`
	// Delivered are the deliveries stored into the old table while the
	// rows moved, one at a time, and LongestMs the longest any took: the
	// wait for the switch, which holds the old table locked.
	Delivered int     `json:"delivered_meanwhile"`
	LongestMs float64 `json:"longest_delivery_ms"`
}

// measureUpgrade makes a database at the schema before migration 00011
// holding n account.updated events of the last ten days (1 % unprocessed),
// as the ingest stored them, and times Migrate moving them while a client
// keeps storing deliveries as the ingest before did.
func measureUpgrade(ctx context.Context, h *harness, n int) (Upgrade, error) {
	dbURL, err := testenv.CreateDatabase(ctx, h.serverURL, "sw_bench_upgrade_", false)
	if err != nil {
		return Upgrade{}, err
	}
	defer func() { _ = testenv.DropDatabase(context.Background(), h.serverURL, dbURL) }()
	if _, err := store.Migrate(ctx, dbURL, store.MigrateOptions{UpTo: 10}); err != nil {
		return Upgrade{}, err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return Upgrade{}, err
	}
	defer conn.Close(context.Background())
	fmt.Fprintf(os.Stderr, "upgrade: storing %d events at the schema before 00011…\n", n)
	if err := fillLegacy(ctx, conn, n); err != nil {
		return Upgrade{}, err
	}
	fmt.Fprintln(os.Stderr, "upgrade: migrating while deliveries go on…")
	stop := make(chan struct{})
	delivered := make(chan Upgrade, 1)
	go func() { delivered <- deliverLegacy(ctx, conn, stop) }()
	began := time.Now()
	_, err = store.Migrate(ctx, dbURL, store.MigrateOptions{})
	u := Upgrade{Rows: n, Seconds: time.Since(began).Seconds()}
	close(stop)
	d := <-delivered
	u.Delivered, u.LongestMs = d.Delivered, d.LongestMs
	return u, err
}

// deliverLegacy stores deliveries one at a time as the ingest before 00011
// did, until stop is closed or the old table is gone.
func deliverLegacy(ctx context.Context, conn *pgx.Conn, stop <-chan struct{}) Upgrade {
	var u Upgrade
	for i := 0; ; i++ {
		select {
		case <-stop:
			return u
		default:
		}
		t0 := time.Now()
		_, err := conn.Exec(ctx, `INSERT INTO webhook_events (stripe_event_id, event_type, payload)
			VALUES ($1, 'account.updated', '{"object":"event"}') ON CONFLICT (stripe_event_id) DO NOTHING`,
			fmt.Sprintf("evt_during_%d", i))
		if err != nil {
			return u // the table is the partitioned one now: the old statement no longer fits
		}
		u.Delivered++
		u.LongestMs = max(u.LongestMs, float64(time.Since(t0).Microseconds())/1000)
	}
}

// fillLegacy inserts n events as the ingest before 00011 stored them: the
// same account.updated payload (jsonb) under n ids, created over the last
// ten days; one in a hundred not processed.
func fillLegacy(ctx context.Context, conn *pgx.Conn, n int) error {
	template := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_upgrade"})
	_, err := conn.Exec(ctx, `INSERT INTO webhook_events (stripe_event_id, event_type, payload, processed, processed_at,
			received_at, created_at, livemode, stripe_account_id)
		SELECT 'evt_up_' || i, 'account.updated',
			jsonb_set(jsonb_set($1::jsonb, '{id}', to_jsonb('evt_up_' || i)), '{created}', to_jsonb(floor(extract(epoch FROM t))::bigint)),
			i % 100 <> 0, CASE WHEN i % 100 <> 0 THEN t END, t, t, false, 'acct_up_' || (i % 2000)
		FROM generate_series(1, $2::int) AS i,
			LATERAL (SELECT (now() AT TIME ZONE 'utc') - i * (interval '10 days' / $2::int) AS t) AS s`, string(template), n)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "VACUUM ANALYZE webhook_events")
	return err
}
