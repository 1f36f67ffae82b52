package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"

	"stripe-webhooks/migrations"
)

// MigrateOptions tune Migrate.
type MigrateOptions struct {
	// Logger receives the run's progress: a wait for another run, each
	// index repaired, an index build still going. Default: discard.
	Logger *slog.Logger
	// ProgressEvery is how often a wait for another run, or an index build
	// still going, is logged. Default: 30s.
	ProgressEvery time.Duration
	// UpTo, when above 0, stops at the migration of that version: a
	// database at an older schema, for the tests and the bench of an
	// upgrade.
	UpTo int64
}

// Migrate applies every pending migration and returns how many it applied.
// Running it again is a no-op, and killing it at any moment is harmless: the
// next run finishes the work.
//
// Every change a run makes is made under a Postgres advisory lock (goose's),
// held by the session that runs the migrations, so concurrent runs take
// turns. Holding it, Migrate first repairs the indexes an interrupted run
// left invalid (see repairIndexes), then records a migration's version only
// when no index of the schema is invalid, and fails if one is still invalid
// at the end.
//
// Migrate sets no deadline of its own: an index build on a large table takes
// as long as it takes, and a run waits as long as another run holds the
// lock. Connecting is bounded (5 s per attempt); ctx bounds the rest.
func Migrate(ctx context.Context, databaseURL string, opts MigrateOptions) (int, error) {
	return migrate(ctx, databaseURL, migrations.FS, opts)
}

func migrate(ctx context.Context, databaseURL string, fsys fs.FS, opts MigrateOptions) (int, error) {
	db, err := openSQL(databaseURL, false)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	lk := newMigrationLock(db, opts)
	p, err := newProvider(db, fsys, lk)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	var results []*goose.MigrationResult
	if opts.UpTo > 0 {
		results, err = p.UpTo(ctx, opts.UpTo)
	} else {
		results, err = p.Up(ctx)
	}
	if err == nil && !lk.taken {
		// goose takes no lock when no version is pending, but an index may
		// still need its repair: the bug this guards against recorded versions.
		err = lk.alone(ctx, db)
	}
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	return len(results), nil
}

// newProvider returns goose's Provider of the migrations in fsys. It takes
// lk on the session that then runs every migration, and records versions
// through checkedStore.
func newProvider(db *sql.DB, fsys fs.FS, lk *migrationLock) (*goose.Provider, error) {
	versions, err := database.NewStore(database.DialectPostgres, goose.DefaultTablename)
	if err != nil {
		return nil, err
	}
	ext, ok := versions.(database.StoreExtender)
	if !ok {
		return nil, errors.New("goose's Postgres store lacks TableExists")
	}
	return goose.NewProvider(goose.DialectCustom, db, fsys,
		goose.WithStore(checkedStore{ext}), goose.WithSessionLocker(lk))
}

// checkedStore is goose's Postgres version table, recording a version only
// when no index of the schema is invalid (it checks on the migration's own
// session or transaction). A migration whose CREATE INDEX CONCURRENTLY IF NOT
// EXISTS met an invalid index, or that left a partitioned index without an
// index on every partition, stays pending and runs again next time.
type checkedStore struct {
	database.StoreExtender
}

// Insert records req.Version once every index of the schema is valid.
func (s checkedStore) Insert(ctx context.Context, db database.DBTxConn, req database.InsertRequest) error {
	if err := requireValidIndexes(ctx, db); err != nil {
		return fmt.Errorf("version %d not recorded: %w", req.Version, err)
	}
	return s.StoreExtender.Insert(ctx, db, req)
}

// CreateDatabase creates the database named in databaseURL if it is missing,
// connecting to the server's `postgres` database to do so. It reports whether
// it created it.
func CreateDatabase(ctx context.Context, databaseURL string) (bool, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return false, errors.New("create database: DATABASE_URL cannot be parsed as a Postgres URL")
	}
	name := cfg.Database
	if name == "" {
		return false, errors.New("create database: DATABASE_URL names no database")
	}
	adminURL, err := withDatabase(databaseURL, "postgres")
	if err != nil {
		return false, err
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return false, fmt.Errorf("create database: connect: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return false, fmt.Errorf("create database: %w", err)
	}
	if exists {
		return false, nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		if strings.Contains(err.Error(), "already exists") {
			return false, nil
		}
		return false, fmt.Errorf("create database: %w", err)
	}
	return true, nil
}

// withDatabase returns databaseURL pointing at another database.
func withDatabase(databaseURL, name string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "", errors.New("DATABASE_URL cannot be parsed as a URL")
	}
	u.Path = "/" + name
	return u.String(), nil
}
