package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"stripe-webhooks/pkg/testenv"
)

// batchSize is the ingest's largest batch.
const batchSize = 128

// result is one corpus stored in one form, per event.
type result struct {
	corpus, form string
	events       int
	raw          float64       // the delivery's bytes
	datum        float64       // pg_column_size of the stored payload
	heap, toast  float64       // the table's growth after VACUUM: heap (with its maps), TOAST (with its index)
	wal, walFPI  float64       // WAL of the inserts, from EXPLAIN: this session's alone; full-page images
	walServer    float64       // pg_current_wal_lsn's advance meanwhile: every session's
	walMark      float64       // WAL of marking every row processed afterwards, from EXPLAIN
	pgInsert     float64       // Postgres backend CPU to insert, µs
	pgRead       float64       // Postgres backend CPU to read every payload back, µs
	readBytes    float64       // bytes read back
	readWall     time.Duration // reading every payload back, in all
	encode       float64       // Go CPU to encode, µs (0: sent as received)
	decode       float64       // Go CPU to decode what was read back, µs
	exact        bool          // every payload came back byte for byte
}

// measure stores c's deliveries in form f, in a table of its own in a
// database of its own, reads them back, and marks them processed.
func measure(ctx context.Context, serverURL string, c collection, f form) (result, error) {
	r := result{corpus: c.name, form: f.name, events: len(c.events)}
	stored := encodeAll(c.events, f, &r)
	dbURL, err := testenv.CreateDatabase(ctx, serverURL, "sw_payloadcost_", false)
	if err != nil {
		return r, err
	}
	defer func() { _ = testenv.DropDatabase(context.Background(), serverURL, dbURL) }()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return r, err
	}
	defer conn.Close(context.Background())
	if err := f.createTable(ctx, conn); err != nil {
		return r, err
	}
	heap0, toast0, err := tableSize(ctx, conn)
	if err != nil {
		return r, err
	}
	if err := insertAll(ctx, conn, f, stored, &r); err != nil {
		return r, err
	}
	if _, err := conn.Exec(ctx, "VACUUM payloads"); err != nil {
		return r, err
	}
	heap1, toast1, err := tableSize(ctx, conn)
	if err != nil {
		return r, err
	}
	r.heap, r.toast = float64(heap1-heap0)/float64(r.events), float64(toast1-toast0)/float64(r.events)
	back, err := readAll(ctx, conn, f, &r)
	if err != nil {
		return r, err
	}
	if r.exact, err = decodeAll(back, c.events, f, &r); err != nil {
		return r, err
	}
	if err := conn.QueryRow(ctx, "SELECT avg(pg_column_size(payload))::float8 FROM payloads").Scan(&r.datum); err != nil {
		return r, err
	}
	mark, err := explainWAL(ctx, conn, "UPDATE payloads SET processed = true")
	r.walMark = float64(mark.Bytes) / float64(r.events)
	return r, err
}

// encodeAll returns the payloads as f sends them, and sets the Go CPU
// that took and the deliveries' mean size.
func encodeAll(events [][]byte, f form, r *result) [][]byte {
	var raw int
	for _, e := range events {
		raw += len(e)
	}
	r.raw = float64(raw) / float64(len(events))
	if f.encode == nil {
		return events
	}
	out := make([][]byte, len(events))
	began := goCPU()
	for i, e := range events {
		out[i] = f.encode(e)
	}
	r.encode = perEvent(goCPU()-began, len(events))
	return out
}

// tableSize is the payloads table's size: heap with its free space and
// visibility maps, and TOAST with its index.
func tableSize(ctx context.Context, conn *pgx.Conn) (heap, toast int64, err error) {
	err = conn.QueryRow(ctx, `SELECT pg_table_size(c.oid) - coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0),
			coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)
		FROM pg_class c WHERE c.oid = 'payloads'::regclass`).Scan(&heap, &toast)
	return heap, toast, err
}

// walUsage is what EXPLAIN (ANALYZE, WAL) reports of a statement.
type walUsage struct {
	Records int64 `json:"WAL Records"`
	FPI     int64 `json:"WAL FPI"`
	Bytes   int64 `json:"WAL Bytes"`
}

// explainWAL runs sql with args under EXPLAIN (ANALYZE, WAL), which
// executes it (and commits it, outside a transaction), and returns the WAL
// it wrote: this session's alone, its commit record aside.
func explainWAL(ctx context.Context, conn *pgx.Conn, sql string, args ...any) (walUsage, error) {
	var plan []byte
	err := conn.QueryRow(ctx, "EXPLAIN (ANALYZE, WAL, TIMING OFF, COSTS OFF, SUMMARY OFF, FORMAT JSON) "+sql, args...).Scan(&plan)
	if err != nil {
		return walUsage{}, err
	}
	var out []struct{ Plan walUsage }
	if err := json.Unmarshal(plan, &out); err != nil || len(out) != 1 {
		return walUsage{}, fmt.Errorf("EXPLAIN output: %v", err)
	}
	return out[0].Plan, nil
}

// insertAll inserts the payloads in batches of batchSize, each statement
// its own transaction, under EXPLAIN (ANALYZE, WAL) to count this
// session's WAL, and sets the WAL and the backend's CPU per event.
func insertAll(ctx context.Context, conn *pgx.Conn, f form, stored [][]byte, r *result) error {
	pid := conn.PgConn().PID()
	var lsn0, lsn1 string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn0); err != nil {
		return err
	}
	cpu0, err := backendCPU(pid)
	if err != nil {
		return err
	}
	var walBytes, fpi int64
	for start := 0; start < len(stored); start += batchSize {
		batch := stored[start:min(start+batchSize, len(stored))]
		var arg any = batch
		if !f.bytea {
			texts := make([]string, len(batch))
			for i, b := range batch {
				texts[i] = string(b)
			}
			arg = texts
		}
		w, err := explainWAL(ctx, conn, f.insertSQL(), arg)
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		walBytes, fpi = walBytes+w.Bytes, fpi+w.FPI
	}
	cpu1, err := backendCPU(pid)
	if err != nil {
		return err
	}
	var walServer int64
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn1); err != nil {
		return err
	}
	if err := conn.QueryRow(ctx, "SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::int8", lsn1, lsn0).Scan(&walServer); err != nil {
		return err
	}
	n := float64(len(stored))
	r.wal, r.walFPI, r.walServer = float64(walBytes)/n, float64(fpi)/n, float64(walServer)/n
	r.pgInsert = perEvent(cpu1-cpu0, len(stored))
	return nil
}

// readAll reads every payload back in one query, in binary format as pgx
// reads them, and sets the backend's CPU per event and the bytes read.
func readAll(ctx context.Context, conn *pgx.Conn, f form, r *result) ([][]byte, error) {
	pid := conn.PgConn().PID()
	cpu0, err := backendCPU(pid)
	if err != nil {
		return nil, err
	}
	began := time.Now()
	rr := conn.PgConn().ExecParams(ctx, "SELECT payload FROM payloads", nil, nil, nil, []int16{1})
	out := make([][]byte, 0, r.events)
	var n int
	for rr.NextRow() {
		v := rr.Values()[0]
		if f.column == "jsonb" && len(v) > 0 {
			v = v[1:] // jsonb's binary form: a version byte, then the text
		}
		n += len(v)
		out = append(out, append([]byte(nil), v...))
	}
	if _, err := rr.Close(); err != nil {
		return nil, err
	}
	r.readWall = time.Since(began)
	cpu1, err := backendCPU(pid)
	if err != nil {
		return nil, err
	}
	r.pgRead, r.readBytes = perEvent(cpu1-cpu0, len(out)), float64(n)/float64(len(out))
	return out, nil
}

// decodeAll decodes what was read back, setting the Go CPU per event, and
// reports whether it is the deliveries byte for byte (in any order).
func decodeAll(back, events [][]byte, f form, r *result) (bool, error) {
	if f.decode != nil {
		began := goCPU()
		for i, b := range back {
			d, err := f.decode(b)
			if err != nil {
				return false, fmt.Errorf("decode: %w", err)
			}
			back[i] = d
		}
		r.decode = perEvent(goCPU()-began, len(back))
	}
	want := make(map[string]int, len(events))
	for _, e := range events {
		want[string(e)]++
	}
	for _, b := range back {
		if want[string(b)] == 0 {
			return false, nil
		}
		want[string(b)]--
	}
	return len(back) == len(events), nil
}
