package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for goose
	"github.com/pressly/goose/v3"

	"stripe-webhooks/migrations"
	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/testenv"
)

func TestMigrateCreatesDatabaseAndIsIdempotent(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	url := pg.URL("stripe_webhooks")
	files, _ := fs.Glob(migrations.FS, "*.sql")
	for i, want := range []string{fmt.Sprintf(`"applied":%d`, len(files)), `"applied":0`} {
		var out bytes.Buffer
		err := run(context.Background(), []string{"worker", "migrate", "--create-database"}, []string{"DATABASE_URL=" + url}, &out, &out)
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i+1, err, out.String())
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("run %d: output %q lacks %s", i+1, out.String(), want)
		}
	}
}

func TestUnknownCommandIsAUsageError(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), []string{"worker", "nonsense"}, nil, &out, &out)
	if code := config.ExitCode(err, &out); code != 2 {
		t.Errorf("exit code = %d, want 2", code)
	}
	if !strings.Contains(out.String(), "usage: worker") {
		t.Errorf("output %q lacks usage", out.String())
	}
}

func TestMigrateBadDatabaseURLIsAConfigError(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), []string{"worker", "migrate"}, []string{"DATABASE_URL=mysql://nope"}, &out, &out)
	if code := config.ExitCode(err, &out); code != 2 {
		t.Errorf("exit code = %d, want 2 (%v)", code, err)
	}
}

// Issue 21, fault 3: `worker migrate` killed while CREATE INDEX CONCURRENTLY
// waits for an old snapshot (a long transaction) left an invalid index, which
// the next run skipped (IF NOT EXISTS) while recording the version. Now the
// server cancels the build of a run killed (SIGKILL) or stopped (SIGTERM),
// and the next run rebuilds the index: exit 0, the latest version, every
// index valid, the schema of a run never interrupted.
func TestMigrateKilledDuringIndexBuildRunsAgainToValidIndexes(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dbURL := testenv.EmptyDatabase(t, "")
			migrateUpTo(t, dbURL, lastIndexMigration(t)-1)
			db := connect(t, dbURL)
			holder, holderPID := holdSnapshot(t, dbURL)
			cmd, exited := startMigrateWaitingFor(t, dbURL, db, holderPID)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				t.Fatalf("worker migrate still runs 30 s after %s", sig)
			}
			requireBuildEnded(t, db)
			if err := holder.Rollback(ctx); err != nil {
				t.Fatal(err)
			}

			runMigrateBinary(t, dbURL)
			checkMigratedSchema(t, dbURL)
		})
	}
}

// startMigrateWaitingFor starts bin/worker migrate, and returns once its
// index build waits for the session holderPID. exited receives its exit.
func startMigrateWaitingFor(t *testing.T, dbURL string, db *pgx.Conn, holderPID int) (*exec.Cmd, <-chan error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "worker"), "migrate")
	cmd.Env = []string{"DATABASE_URL=" + dbURL}
	logs := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	testenv.Eventually(t, time.Minute, "the index build to wait for the old snapshot", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("worker migrate exited before its index build waited: %v\n%s", err, logs.String())
		default:
		}
		var waiting bool
		err := db.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_stat_progress_create_index
			WHERE datname = current_database() AND current_locker_pid = $1)`, holderPID).Scan(&waiting)
		return err == nil && waiting
	})
	return cmd, exited
}

// requireBuildEnded checks that the server has ended the index build of a
// run that is gone: otherwise it builds on for nobody, holding the migration
// lock. If it has not, it ends it, as a failover or a DBA would, to see what
// the next run makes of the index.
func requireBuildEnded(t *testing.T, db *pgx.Conn) {
	t.Helper()
	start := time.Now()
	if pollUntil(30*time.Second, func() bool { return indexBuilds(t, db) == 0 }) {
		t.Logf("the server ended the build %s after worker migrate ended", time.Since(start).Round(10*time.Millisecond))
		return
	}
	t.Errorf("30 s after worker migrate ended, its index build still runs on the server")
	if _, err := db.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_progress_create_index
		WHERE datname = current_database()`); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the build to end", func() bool { return indexBuilds(t, db) == 0 })
}

// A database where the bug already struck (the version recorded, its index
// invalid), with the leftover of an interrupted REINDEX CONCURRENTLY too, is
// healed by the next `worker migrate`: the index rebuilt under its name and
// definition, the leftover dropped.
func TestMigrateRebuildsAnInvalidIndexOfARecordedVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testenv.Database(t, "")
	db := connect(t, dbURL)
	index, table, def := "pending_events_created_at", "pending_events", "(created_at)"
	if _, err := db.Exec(ctx, "DROP INDEX "+index); err != nil {
		t.Fatal(err)
	}
	cutOff(t, dbURL, fmt.Sprintf("CREATE INDEX CONCURRENTLY %s ON %s %s", index, table, def))
	cutOff(t, dbURL, "REINDEX INDEX CONCURRENTLY stripe_external_accounts_account_idx")
	if got := invalidIndexes(t, db); !slices.Contains(got, index) || !slices.Contains(got, "stripe_external_accounts_account_idx_ccnew") {
		t.Fatalf("set-up: invalid indexes %v, want %s and stripe_external_accounts_account_idx_ccnew", got, index)
	}

	runMigrateBinary(t, dbURL)
	checkMigratedSchema(t, dbURL)
}

// lastIndexMigration returns the version of the newest migration that
// builds an index concurrently.
func lastIndexMigration(t *testing.T) int64 {
	t.Helper()
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var version int64
	for _, f := range files {
		b, err := fs.ReadFile(migrations.FS, f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(strings.ToUpper(string(b)), "CREATE INDEX CONCURRENTLY") {
			v, err := goose.NumericComponent(f)
			if err != nil {
				t.Fatal(err)
			}
			version = max(version, v)
		}
	}
	if version == 0 {
		t.Fatal("no migration builds an index concurrently")
	}
	return version
}

// migrateUpTo applies the migrations up to version, with goose alone.
func migrateUpTo(t *testing.T, dbURL string, version int64) {
	t.Helper()
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(context.Background(), version); err != nil {
		t.Fatal(err)
	}
}

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// holdSnapshot opens a REPEATABLE READ transaction that has read something,
// as a long report would: CREATE INDEX CONCURRENTLY waits for it to end. It
// returns the transaction and its session's pid.
func holdSnapshot(t *testing.T, dbURL string) (pgx.Tx, int) {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, dbURL)
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid() FROM goose_db_version LIMIT 1").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return tx, pid
}

// cutOff runs stmt while a snapshot is held, and cuts it off once it waits
// for it (statement_timeout), as a deadline or a cancelled run would.
func cutOff(t *testing.T, dbURL, stmt string) {
	t.Helper()
	ctx := context.Background()
	holder, _ := holdSnapshot(t, dbURL)
	defer holder.Rollback(ctx)
	conn := connect(t, dbURL)
	if _, err := conn.Exec(ctx, "SET statement_timeout = '1s'"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "statement timeout") {
		t.Fatalf("set-up: %s: %v, want a statement timeout", stmt, err)
	}
}

// indexBuilds counts the index builds running in the database.
func indexBuilds(t *testing.T, db *pgx.Conn) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_stat_progress_create_index WHERE datname = current_database()").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// invalidIndexes names the invalid indexes of every table of the database.
func invalidIndexes(t *testing.T, db *pgx.Conn) []string {
	t.Helper()
	rows, err := db.Query(context.Background(),
		"SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// runMigrateBinary runs bin/worker migrate to its end, which must be exit 0.
func runMigrateBinary(t *testing.T, dbURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "worker"), "migrate")
	cmd.Env = []string{"DATABASE_URL=" + dbURL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("worker migrate: %v\n%s", err, out)
	}
	t.Logf("worker migrate:\n%s", out)
}

// checkMigratedSchema checks that the database at dbURL is at the latest
// version, with every index valid, and has the indexes, by name and
// definition, of a database migrated in one uninterrupted run.
func checkMigratedSchema(t *testing.T, dbURL string) {
	t.Helper()
	ctx := context.Background()
	db := connect(t, dbURL)
	if got := invalidIndexes(t, db); len(got) > 0 {
		t.Errorf("invalid indexes after worker migrate: %v", got)
	}
	files, _ := fs.Glob(migrations.FS, "*.sql")
	latest, _ := goose.NumericComponent(files[len(files)-1])
	var version int64
	if err := db.QueryRow(ctx, "SELECT max(version_id) FROM goose_db_version WHERE is_applied").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version != latest {
		t.Errorf("goose version = %d, want %d", version, latest)
	}
	if diff := cmp.Diff(indexDefinitions(t, connect(t, testenv.Database(t, ""))), indexDefinitions(t, db)); diff != "" {
		t.Errorf("indexes differ from an uninterrupted run's (-want +got):\n%s", diff)
	}
}

// indexDefinitions lists the indexes of the schema's tables by name and
// definition, sorted, with each day partition's date replaced by YYYYMMDD:
// the partitions made ahead start at the day a run is on, and two runs
// either side of midnight make the same number of them.
func indexDefinitions(t *testing.T, db *pgx.Conn) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT indexname || ': ' || indexdef FROM pg_indexes
		WHERE schemaname = current_schema() ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range defs {
		defs[i] = dayPartition.ReplaceAllString(d, "${1}YYYYMMDD")
	}
	slices.Sort(defs)
	return defs
}

// dayPartition matches the date in a day partition's name.
var dayPartition = regexp.MustCompile(`(webhook_events_p)\d{8}`)

// pollUntil polls cond every 20 ms until it is true (true) or timeout
// passes (false).
func pollUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
