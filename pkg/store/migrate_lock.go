package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pressly/goose/v3/lock"
)

// migrationLock is the session locker goose takes for Migrate, on the session
// that then runs every migration and records every version. The advisory
// lock therefore lives exactly as long as any statement of the run can: a run
// killed during an index build holds it until the server has cancelled that
// build, so the next run never meets a build still going. Holding the lock,
// SessionLock repairs what an interrupted run left before goose reads which
// versions are pending, and SessionUnlock checks that no index is left
// invalid before it lets go.
type migrationLock struct {
	id    int64   // goose's key, so that older binaries take turns with this one too
	db    *sql.DB // for the progress reports, on a session of their own
	log   *slog.Logger
	every time.Duration // how often a wait or a build still going is logged

	taken        bool // SessionLock succeeded
	stopProgress func()
}

func newMigrationLock(db *sql.DB, opts MigrateOptions) *migrationLock {
	l := &migrationLock{id: lock.DefaultLockID, db: db, log: opts.Logger, every: opts.ProgressEvery}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.every <= 0 {
		l.every = 30 * time.Second
	}
	return l
}

// migrationSessionSQL sets up the session that runs the migrations. No
// statement_timeout (one meant for the services' queries, set on the role)
// cuts an index build. And the server checks every 5 s that the client is
// still there (PostgreSQL 14 and later): without it, the CREATE INDEX
// CONCURRENTLY of a killed run waits on for old snapshots, builds for nobody
// and holds the lock all the while; with it, the build is cancelled and the
// lock released within seconds, and the next run rebuilds the invalid index.
const migrationSessionSQL = `SELECT set_config('statement_timeout', '0', false),
	(SELECT set_config(name, '5s', false) FROM pg_settings WHERE name = 'client_connection_check_interval')`

// SessionLock sets up conn, takes the lock on it (waiting as long as another
// run holds it) and repairs the invalid indexes of the schema.
func (l *migrationLock) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, migrationSessionSQL); err != nil {
		return fmt.Errorf("set up the migration session: %w", err)
	}
	if err := l.wait(ctx, conn); err != nil {
		return err
	}
	var pid int
	if err := conn.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return errors.Join(fmt.Errorf("migration session: %w", err), l.unlock(context.WithoutCancel(ctx), conn))
	}
	l.stopProgress = l.reportProgress(ctx, pid)
	if err := repairIndexes(ctx, conn, l.log); err != nil {
		l.stopProgress()
		return errors.Join(err, l.unlock(context.WithoutCancel(ctx), conn))
	}
	l.taken = true
	return nil
}

// SessionUnlock checks that no index of the schema is invalid, and releases
// the lock. goose calls it whether or not the run succeeded.
func (l *migrationLock) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	l.stopProgress()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := requireValidIndexes(ctx, conn); err != nil {
		if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
			return nil // the session is gone (a cancelled run), and its lock with it
		}
		return errors.Join(fmt.Errorf("at the end of the run: %w", err), l.unlock(ctx, conn))
	}
	return l.unlock(ctx, conn)
}

// alone takes the lock and lets it go on a session of its own, which
// repairs and checks the indexes when goose took no lock.
func (l *migrationLock) alone(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := l.SessionLock(ctx, conn); err != nil {
		return err
	}
	return l.SessionUnlock(context.WithoutCancel(ctx), conn)
}

// wait takes the lock on conn. It polls, never blocks in pg_advisory_lock:
// a statement blocked there holds a snapshot, which the holder's CREATE
// INDEX CONCURRENTLY must wait for; Postgres breaks that deadlock by failing
// one of the two.
func (l *migrationLock) wait(ctx context.Context, conn *sql.Conn) error {
	start := time.Now()
	logged := start.Add(-l.every)
	for {
		var locked bool
		if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", l.id).Scan(&locked); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if locked {
			return nil
		}
		if time.Since(logged) >= l.every {
			logged = time.Now()
			l.log.Info("waiting for another migration run", "holder_pid", l.holder(ctx, conn),
				"waited_seconds", int(time.Since(start).Seconds()))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("take the migration lock: %w", ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// holder returns the pid of the session holding the lock, or 0.
func (l *migrationLock) holder(ctx context.Context, conn *sql.Conn) int {
	var pid int
	_ = conn.QueryRowContext(ctx, `SELECT pid FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 1
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid`, l.id).Scan(&pid)
	return pid
}

func (l *migrationLock) unlock(ctx context.Context, conn *sql.Conn) error {
	var unlocked bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", l.id).Scan(&unlocked); err != nil {
		return fmt.Errorf("release the migration lock: %w", err)
	}
	if !unlocked {
		return errors.New("release the migration lock: it was not held")
	}
	return nil
}

// reportProgress logs every l.every, until stop is called, the index build
// that session pid is running, if any.
func (l *migrationLock) reportProgress(ctx context.Context, pid int) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(l.every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				l.logIndexBuild(ctx, pid)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// logIndexBuild logs the progress of the index build of session pid
// (pg_stat_progress_create_index), if it is running one.
func (l *migrationLock) logIndexBuild(ctx context.Context, pid int) {
	var (
		index, table, command, phase                     string
		blocksDone, blocksTotal, tuplesDone, tuplesTotal int64
		lockerPID                                        int
	)
	err := l.db.QueryRowContext(ctx, `SELECT coalesce(nullif(index_relid, 0)::regclass::text, ''),
		relid::regclass::text, command, phase, blocks_done, blocks_total, tuples_done, tuples_total,
		coalesce(current_locker_pid, 0)
		FROM pg_stat_progress_create_index WHERE pid = $1`, pid).
		Scan(&index, &table, &command, &phase, &blocksDone, &blocksTotal, &tuplesDone, &tuplesTotal, &lockerPID)
	if err != nil {
		return // no build running now, or the report failed: neither stops the run
	}
	l.log.Info("index build in progress", "index", index, "table", table, "command", command,
		"phase", phase, "blocks_done", blocksDone, "blocks_total", blocksTotal,
		"tuples_done", tuplesDone, "tuples_total", tuplesTotal, "waiting_for_pid", lockerPID)
}
