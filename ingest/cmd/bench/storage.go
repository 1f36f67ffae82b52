package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"stripe-webhooks/ingest/loadgen"
	"stripe-webhooks/pkg/testenv"
)

// Storage is what one event costs Postgres through bin/ingest and
// bin/worker, stored and applied: WAL written, what the database keeps
// after VACUUM, the share of the event rows' updates that were heap-only,
// and Postgres's CPU.
type Storage struct {
	Events    int     `json:"events"`
	Clients   int     `json:"clients"`
	Accounts  int     `json:"accounts"`
	Seconds   float64 `json:"seconds_to_store_and_apply"`
	WALBytes  float64 `json:"wal_bytes_per_event"`
	DiskBytes float64 `json:"database_growth_bytes_per_event"`
	// Relations is each relation's growth per event (heap, TOAST,
	// indexes), of those that grew.
	Relations []RelationGrowth `json:"relations"`
	// Updates and HOTUpdates are the updates of the event tables' rows
	// (webhook_events' partitions and pending_events), and of those the
	// heap-only ones, from pg_stat_user_tables.
	Updates     int64    `json:"event_row_updates"`
	HOTUpdates  int64    `json:"event_row_hot_updates"`
	HOTShare    float64  `json:"hot_update_share"`
	PostgresCPU float64  `json:"postgres_cpu_us_per_event"`
	CPU         cpuShare `json:"cpu"`
}

// RelationGrowth is one table's growth per event.
type RelationGrowth struct {
	Table   string  `json:"table"`
	Heap    float64 `json:"heap_bytes"`
	TOAST   float64 `json:"toast_bytes"`
	Indexes float64 `json:"index_bytes"`
	NIndex  int     `json:"indexes"`
}

// storageSnapshot is what measureStorage reads before and after.
type storageSnapshot struct {
	lsn     string
	size    int64
	rels    map[string]RelationGrowth // absolute sizes, bytes
	updates int64
	hot     int64
}

// measureStorage stores and applies n account.updated deliveries from c
// clients over accounts accounts in a database of its own, through
// bin/ingest and bin/worker, and divides what Postgres wrote and kept by
// the events stored: VACUUM and CHECKPOINT before and after, the services
// stopped before the second.
func measureStorage(ctx context.Context, h *harness, bin string, n, c, accounts int) (Storage, error) {
	dbURL, err := testenv.CreateDatabase(ctx, h.serverURL, "sw_bench_storage_", true)
	if err != nil {
		return Storage{}, err
	}
	defer func() { _ = testenv.DropDatabase(context.Background(), h.serverURL, dbURL) }()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return Storage{}, err
	}
	defer conn.Close(context.Background())
	before, err := settleAndRead(ctx, conn)
	if err != nil {
		return Storage{}, err
	}
	env := withEnv(h.env, "DATABASE_URL="+dbURL)
	began := time.Now()
	cpu, err := storeAndApply(ctx, conn, bin, env, n, c, accounts)
	if err != nil {
		return Storage{}, err
	}
	s := Storage{Clients: c, Accounts: accounts, Seconds: time.Since(began).Seconds(), CPU: cpu, PostgresCPU: cpu.PostgresUs}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM webhook_events").Scan(&s.Events); err != nil {
		return s, err
	}
	after, err := settleAndRead(ctx, conn)
	if err != nil {
		return s, err
	}
	return s, s.fill(ctx, conn, before, after)
}

// storeAndApply runs bin/worker and bin/ingest on env, delivers n events,
// waits until every one is processed, and stops both. It returns the CPU
// spent per delivery meanwhile, read while the services and their
// database sessions still run.
func storeAndApply(ctx context.Context, conn *pgx.Conn, bin string, env []string, n, c, accounts int) (cpuShare, error) {
	w, err := startService(ctx, filepath.Join(bin, "worker"), nil, env, "WORKER_HTTP_PORT")
	if err != nil {
		return cpuShare{}, err
	}
	defer w.Stop()
	in, err := startService(ctx, filepath.Join(bin, "ingest"), nil, withEnv(env, "SHUTDOWN_TIMEOUT=5s"), "PORT")
	if err != nil {
		return cpuShare{}, err
	}
	defer in.Stop()
	mark := markCPU()
	rep, err := loadgen.Run(ctx, loadgen.Options{URL: in.Base + webhookPath, Secret: secret, Concurrency: c,
		Requests: n, EventType: "account.updated", Accounts: accounts})
	if err != nil {
		return cpuShare{}, err
	}
	if rep.Status["200"] != n {
		return cpuShare{}, fmt.Errorf("storage: %d of %d deliveries answered 200: %v", rep.Status["200"], n, rep.Status)
	}
	var qerr error
	err = testenv.WaitFor(5*time.Minute, "every stored event processed", func() bool {
		var waiting bool
		qerr = conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pending_events)").Scan(&waiting)
		return qerr != nil || !waiting
	})
	if err == nil {
		err = qerr
	}
	return mark.since(n), err
}

// settleAndRead vacuums the database and checkpoints, then reads the WAL
// position, the database's size, each table's sizes and the event tables'
// update counters.
func settleAndRead(ctx context.Context, conn *pgx.Conn) (storageSnapshot, error) {
	s := storageSnapshot{rels: map[string]RelationGrowth{}}
	for _, q := range []string{"VACUUM", "CHECKPOINT"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return s, fmt.Errorf("storage: %s: %w", q, err)
		}
	}
	err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text, pg_database_size(current_database())`).Scan(&s.lsn, &s.size)
	if err != nil {
		return s, err
	}
	// A partitioned table's partitions count as the table.
	rows, err := conn.Query(ctx, `SELECT coalesce((SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid), c.relname),
			sum(pg_relation_size(c.oid))::bigint, sum(coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0))::bigint,
			sum(pg_indexes_size(c.oid))::bigint, max((SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid))
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND c.relkind = 'r'
		GROUP BY 1`)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var r RelationGrowth
		var heap, toast, idx int64
		if err := rows.Scan(&r.Table, &heap, &toast, &idx, &r.NIndex); err != nil {
			return s, err
		}
		r.Heap, r.TOAST, r.Indexes = float64(heap), float64(toast), float64(idx)
		s.rels[r.Table] = r
	}
	if err := rows.Err(); err != nil {
		return s, err
	}
	err = conn.QueryRow(ctx, `SELECT coalesce(sum(n_tup_upd), 0)::bigint, coalesce(sum(n_tup_hot_upd), 0)::bigint
		FROM pg_stat_user_tables WHERE relname LIKE 'webhook_event%' OR relname = 'pending_events'`).Scan(&s.updates, &s.hot)
	return s, err
}

// fill divides the differences between before and after by the events.
func (s *Storage) fill(ctx context.Context, conn *pgx.Conn, before, after storageSnapshot) error {
	var wal int64
	if err := conn.QueryRow(ctx, "SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint", after.lsn, before.lsn).Scan(&wal); err != nil {
		return err
	}
	per := func(v float64) float64 { return v / float64(max(s.Events, 1)) }
	s.WALBytes = per(float64(wal))
	s.DiskBytes = per(float64(after.size - before.size))
	for name, a := range after.rels {
		b := before.rels[name]
		g := RelationGrowth{Table: name, Heap: per(a.Heap - b.Heap), TOAST: per(a.TOAST - b.TOAST),
			Indexes: per(a.Indexes - b.Indexes), NIndex: a.NIndex}
		if g.Heap+g.TOAST+g.Indexes > 0 {
			s.Relations = append(s.Relations, g)
		}
	}
	s.Updates, s.HOTUpdates = after.updates-before.updates, after.hot-before.hot
	if s.Updates > 0 {
		s.HOTShare = float64(s.HOTUpdates) / float64(s.Updates)
	}
	fmt.Fprintf(os.Stderr, "storage: %d events, %.0f B of WAL and %.0f B kept each\n", s.Events, s.WALBytes, s.DiskBytes)
	return nil
}
