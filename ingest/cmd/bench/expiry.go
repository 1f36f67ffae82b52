package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/testenv"
)

// Expiry is the time retention takes to remove a day of processed events
// past WEBHOOK_RETENTION, and the dead tuples it leaves behind.
type Expiry struct {
	Events     int     `json:"events"`
	Seconds    float64 `json:"seconds"`
	DeadTuples int64   `json:"dead_tuples_left"`
}

// measureExpiry stores n processed events of one day 40 days ago (small
// payloads: the removal, not the copy, is measured) in a database of its
// own, and times the store's retention removing them: dropping the day's
// partition.
func measureExpiry(ctx context.Context, h *harness, n int) (Expiry, error) {
	dbURL, err := testenv.CreateDatabase(ctx, h.serverURL, "sw_bench_expiry_", true)
	if err != nil {
		return Expiry{}, err
	}
	defer func() { _ = testenv.DropDatabase(context.Background(), h.serverURL, dbURL) }()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return Expiry{}, err
	}
	defer conn.Close(context.Background())
	st, err := store.Open(dbURL, store.Options{MaxConns: 2})
	if err != nil {
		return Expiry{}, err
	}
	day := time.Now().UTC().Add(-40 * 24 * time.Hour).Truncate(24 * time.Hour)
	if _, err := st.EnsurePartitions(ctx, day, day); err != nil {
		_ = st.Close()
		return Expiry{}, err
	}
	fmt.Fprintf(os.Stderr, "expiry: storing %d processed events of %s…\n", n, day.Format(time.DateOnly))
	if err := fillDay(ctx, conn, day, n); err != nil {
		_ = st.Close()
		return Expiry{}, err
	}
	began := time.Now()
	ex, err := st.ExpireEvents(ctx, day.Add(24*time.Hour))
	e := Expiry{Events: int(ex.Events - ex.Kept + ex.Past), Seconds: time.Since(began).Seconds()}
	_ = st.Close() // its backends end, and their statistics reach the server
	if err != nil {
		return e, err
	}
	e.DeadTuples, err = deadTuples(ctx, conn)
	return e, err
}

// deadTuples is the dead tuples the event tables hold, as the statistics
// say once the closed store's backends have reported theirs (they do as
// they exit): the most read over two seconds.
func deadTuples(ctx context.Context, conn *pgx.Conn) (int64, error) {
	var most int64
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		var n int64
		if err := conn.QueryRow(ctx, `SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_user_tables
			WHERE relname LIKE 'webhook_event%'`).Scan(&n); err != nil {
			return 0, err
		}
		most = max(most, n)
		if _, err := conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
			return 0, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return most, nil
}

// fillDay inserts n processed events created, received and stored during
// day, into day's partition, and VACUUMs them (so that no dead tuple of
// the filling is counted).
func fillDay(ctx context.Context, conn *pgx.Conn, day time.Time, n int) error {
	_, err := conn.Exec(ctx, `INSERT INTO webhook_events (id, stripe_event_id, event_type, payload, processed, processed_at,
			received_at, created_at)
		SELECT sw_event_id(floor(extract(epoch FROM t))::bigint, 'evt_expiry_' || i), 'evt_expiry_' || i, 'account.updated',
			convert_to('{"object":"event"}', 'UTF8'), true, t, t, t
		FROM generate_series(1, $2) AS i, LATERAL (SELECT $1::timestamp + i * (interval '1 day' / ($2 + 1)) AS t) AS s`, day, n)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "VACUUM webhook_events")
	return err
}
