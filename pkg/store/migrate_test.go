package store_test

import (
	"context"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3/lock"

	"stripe-webhooks/migrations"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/testenv"
)

// partitionedIndexSQL creates a partitioned table and an index on the parent
// only: invalid until an index of each partition is attached to it.
const partitionedIndexSQL = `CREATE TABLE measurements (id int, v int) PARTITION BY RANGE (id);
CREATE TABLE measurements_1 PARTITION OF measurements FOR VALUES FROM (0) TO (100);
CREATE INDEX measurements_v ON ONLY measurements (v);`

// A migration that leaves an index invalid (here an index of a partitioned
// table no partition has attached to) fails, and its version is not
// recorded: the next run applies it again.
func TestMigrationLeavingAnInvalidIndexIsNotRecorded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.EmptyDatabase(t, "")
	fsys := fstest.MapFS{"00001_measurements.sql": {Data: []byte(
		"-- +goose NO TRANSACTION\n-- +goose Up\n" + partitionedIndexSQL + "\n-- +goose Down\nDROP TABLE measurements;\n")}}
	_, err := store.MigrateFS(ctx, url, fsys, store.MigrateOptions{})
	if err == nil || !strings.Contains(err.Error(), "measurements_v") {
		t.Fatalf("migrate = %v, want an error naming the invalid index measurements_v", err)
	}
	conn := connectPgx(t, url)
	var recorded bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM goose_db_version WHERE version_id = 1)").Scan(&recorded); err != nil {
		t.Fatal(err)
	}
	if recorded {
		t.Error("version 1 was recorded with its index invalid")
	}
}

// An invalid index that no rebuild makes valid (a partitioned table's) fails
// the run even when no migration is pending.
func TestMigrateFailsOnAnInvalidIndexWithNothingPending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, url := setup(t)
	if _, err := connectPgx(t, url).Exec(ctx, partitionedIndexSQL); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Migrate(ctx, url, store.MigrateOptions{}); err == nil || !strings.Contains(err.Error(), "measurements_v") {
		t.Fatalf("migrate = %v, want an error naming the invalid index measurements_v", err)
	}
}

// A run waits, without a deadline of its own, as long as another holds the
// lock, and says who holds it.
func TestMigrateWaitsForTheRunHoldingTheLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.EmptyDatabase(t, "")
	holder := connectPgx(t, url)
	var pid int
	if err := holder.QueryRow(ctx, "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock($1)) l", lock.DefaultLockID).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() {
		_, err := store.Migrate(ctx, url, store.MigrateOptions{Logger: slog.New(slog.NewJSONHandler(logs, nil)), ProgressEvery: 100 * time.Millisecond})
		done <- err
	}()
	testenv.Eventually(t, 10*time.Second, "a log of the wait naming the holder", func() bool {
		return strings.Contains(logs.String(), `"msg":"waiting for another migration run","holder_pid":`+strconv.Itoa(pid))
	})
	testenv.Consistently(t, 1500*time.Millisecond, "the run waiting", func() bool { return len(done) == 0 })
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", lock.DefaultLockID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("migrate after the lock was released: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("migrate did not finish after the lock was released")
	}
}

// A build waiting for an old snapshot goes on as long as it must, and its
// progress is logged, naming the session it waits for.
func TestMigrateLogsAnIndexBuildWaitingForASnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.EmptyDatabase(t, "")
	table := fstest.MapFS{"00001_t.sql": {Data: []byte("-- +goose Up\nCREATE TABLE t (v int);\n-- +goose Down\nDROP TABLE t;\n")}}
	if _, err := store.MigrateFS(ctx, url, table, store.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	both := fstest.MapFS{"00001_t.sql": table["00001_t.sql"], "00002_t_v.sql": {Data: []byte(
		"-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_v ON t (v);\n-- +goose Down\nDROP INDEX t_v;\n")}}
	holderConn := connectPgx(t, url)
	holder, err := holderConn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := holder.QueryRow(ctx, "SELECT pg_backend_pid() FROM goose_db_version LIMIT 1").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() {
		_, err := store.MigrateFS(ctx, url, both, store.MigrateOptions{Logger: slog.New(slog.NewJSONHandler(logs, nil)), ProgressEvery: 100 * time.Millisecond})
		done <- err
	}()
	testenv.Eventually(t, 20*time.Second, "a log of the build waiting for the snapshot", func() bool {
		return strings.Contains(logs.String(), `"msg":"index build in progress","index":"t_v","table":"t"`) &&
			strings.Contains(logs.String(), `"waiting_for_pid":`+strconv.Itoa(pid)+"}")
	})
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("migrate after the snapshot was released: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("migrate did not finish after the snapshot was released")
	}
}

func connectPgx(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func TestMigrateTwiceIsANoOp(t *testing.T) {
	t.Parallel()
	_, url := setup(t) // already migrated once
	n, err := store.Migrate(context.Background(), url, store.MigrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("second migrate applied %d migrations, want 0", n)
	}
}

func TestCreateDatabase(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	url := pg.URL("fresh_db")
	created, err := store.CreateDatabase(ctx, url)
	if err != nil || !created {
		t.Fatalf("first create: %v, %v", created, err)
	}
	created, err = store.CreateDatabase(ctx, url)
	if err != nil || created {
		t.Fatalf("second create: %v, %v", created, err)
	}
	files, _ := fs.Glob(migrations.FS, "*.sql")
	if n, err := store.Migrate(ctx, url, store.MigrateOptions{}); err != nil || n != len(files) || n < 4 {
		t.Fatalf("migrate fresh database: %d, %v", n, err)
	}
}
