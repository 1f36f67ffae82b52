package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"stripe-webhooks/pkg/telemetry"
)

// Options tune the connection pool.
type Options struct {
	// MaxConns is the most connections open at once. Default: 10.
	MaxConns int
	// Logger receives slow-query and error lines, never query parameters. Default: discard.
	Logger *slog.Logger
	// AsyncCommit lets this pool's commits return before the WAL reaches
	// disk (synchronous_commit off). Only for work that is safe to redo: the
	// worker's, whose writes and processed mark would be lost together, to be
	// applied again. Never for the ingest, whose 200 promises a durable row.
	// Default: false.
	AsyncCommit bool
}

// Store runs the named database operations of both services.
type Store struct {
	// db is the GORM handle, for simple reads and writes.
	db *gorm.DB
	// pool is the connection pool under db; withConn lends its
	// connections to pgx.
	pool *sql.DB
}

// Open connects to Postgres at databaseURL. Sessions run in UTC so that every
// timestamp column holds UTC. It does not wait for the server to answer.
// With tracing on (telemetry.Setup before Open), every statement, GORM's
// included, is a span under the span of the operation that sends it.
func Open(databaseURL string, opts Options) (*Store, error) {
	sqlDB, err := openSQL(databaseURL, opts.AsyncCommit)
	if err != nil {
		return nil, err
	}
	maxConns := opts.MaxConns
	if maxConns <= 0 {
		maxConns = 10
	}
	sqlDB.SetMaxOpenConns(maxConns)
	sqlDB.SetMaxIdleConns(maxConns)
	sqlDB.SetConnMaxLifetime(30 * time.Minute)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)

	gormLogger := logger.Discard
	if opts.Logger != nil {
		gormLogger = logger.New(slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn), logger.Config{
			SlowThreshold:             time.Second,
			LogLevel:                  logger.Warn,
			IgnoreRecordNotFoundError: true,
			// Never log parameter values: they include payloads.
			ParameterizedQueries: true,
		})
	}
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{
		Logger:                 gormLogger,
		NowFunc:                func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
		SkipDefaultTransaction: true,
		PrepareStmt:            false,
		// Start while Postgres is away (a failover, a restart): the
		// probes say so, and connections are made when it answers.
		DisableAutomaticPing: true,
	})
	if err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("store: open: %w", err)
	}
	return &Store{db: db, pool: sqlDB}, nil
}

// openSQL returns a database/sql handle over pgx whose sessions run in UTC.
func openSQL(databaseURL string, asyncCommit bool) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		// pgx's message can quote the URL and its password: keep only that it failed.
		return nil, errors.New("store: DATABASE_URL cannot be parsed as a Postgres URL")
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["timezone"] = "UTC"
	if asyncCommit {
		cfg.RuntimeParams["synchronous_commit"] = "off"
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	cfg.OnPgError = dropOffPrimary(cfg.OnPgError)
	if telemetry.Enabled() {
		// Statements' text, never their parameters (payloads).
		cfg.Tracer = otelpgx.NewTracer()
	}
	return stdlib.OpenDB(*cfg), nil
}

// dropOffPrimary closes a connection whose server refused a write as a
// standby (read_only_sql_transaction: a primary demoted under a live
// connection) or is shutting down (admin_shutdown and its kin), besides
// what next closes (every FATAL error). The pool then dials again, and
// with several hosts and target_session_attrs=read-write in DATABASE_URL
// finds the primary, wherever it now is.
func dropOffPrimary(next pgconn.PgErrorHandler) pgconn.PgErrorHandler {
	return func(c *pgconn.PgConn, err *pgconn.PgError) bool {
		switch err.Code {
		case "25006", // read_only_sql_transaction
			"57P01", "57P02", "57P03": // admin_shutdown, crash_shutdown, cannot_connect_now
			return false
		}
		return next == nil || next(c, err)
	}
}

// Close closes the pool.
func (s *Store) Close() error { return s.pool.Close() }

// DB exposes the GORM handle to tests (and the bench) that set up or
// inspect rows directly. The services use only the named operations: add
// one rather than reach for DB.
func (s *Store) DB() *gorm.DB { return s.db }

// Ping checks that Postgres answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.PingContext(ctx) }

// IsNotFound reports whether err means no row matched.
func IsNotFound(err error) bool { return errors.Is(err, gorm.ErrRecordNotFound) }

// withConn lends fn a pgx connection of the pool, and makes sure it goes
// back with no transaction open.
func (s *Store) withConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	c, err := s.pool.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer c.Close()
	return c.Raw(func(driverConn any) error {
		conn := driverConn.(*stdlib.Conn).Conn()
		err := fn(conn)
		if conn.PgConn().TxStatus() != 'I' && !conn.IsClosed() {
			rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, rbErr := conn.Exec(rbCtx, "ROLLBACK"); rbErr != nil && err == nil {
				err = rbErr
			}
		}
		return err
	})
}
