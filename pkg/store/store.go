// Package store is the one boundary to Postgres: the GORM models and every
// named operation the services run on them.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/tidwall/gjson"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
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
	db *gorm.DB
}

// Open connects to Postgres at databaseURL. Sessions run in UTC so that every
// timestamp column holds UTC. It does not wait for the server to answer.
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
	return &Store{db: db}, nil
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
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// DB exposes the GORM handle, for tests that set up or inspect rows.
func (s *Store) DB() *gorm.DB { return s.db }

// Ping checks that Postgres answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// NewEvent is a verified delivery about to be stored.
type NewEvent struct {
	StripeEventID string
	EventType     string
	Payload       []byte
	ReceivedAt    time.Time
	// Livemode is the event's livemode (false: a test-mode event).
	Livemode bool
}

// account is the connected account the event was sent for: the payload's
// top-level "account" (Stripe puts it near the start), or empty.
func (e NewEvent) account() string {
	return gjson.GetBytes(e.Payload, "account").Str
}

// Stored is the row a delivery maps to.
type Stored struct {
	// WebhookID is the row's uuid.
	WebhookID string
	// Inserted is false when the event id was already stored.
	Inserted bool
	// Processed tells whether the worker has applied the event.
	Processed bool
	// AfterCommitErr is the error of the Inserter's AfterCommit hook, if any.
	AfterCommitErr error
}

// InsertEvent stores one delivery once per Stripe event id, with the same
// INSERT … ON CONFLICT (stripe_event_id) DO NOTHING the Inserter runs for a
// batch: atomic under concurrent duplicates. When the id exists it reads the
// existing row instead.
func (s *Store) InsertEvent(ctx context.Context, e NewEvent) (Stored, error) {
	sqlDB, err := s.db.DB()
	if err != nil {
		return Stored{}, err
	}
	id := e.StripeEventID
	inserted, err := insertRows(ctx, sqlDB, nil, []string{id}, []string{e.EventType}, [][]byte{e.Payload},
		[]time.Time{e.ReceivedAt.UTC()}, []bool{e.Livemode}, []string{e.account()})
	if err != nil {
		return Stored{}, fmt.Errorf("store: insert event: %w", err)
	}
	if st, ok := inserted[id]; ok {
		return st, nil
	}
	existing, err := lookupRows(ctx, sqlDB, []string{id})
	if err != nil {
		return Stored{}, fmt.Errorf("store: read duplicate event: %w", err)
	}
	st, ok := existing[id]
	if !ok {
		return Stored{}, fmt.Errorf("store: event %s neither inserted nor found", id)
	}
	return st, nil
}

// EventByStripeID returns the stored event with that Stripe id.
func (s *Store) EventByStripeID(ctx context.Context, stripeEventID string) (WebhookEvent, error) {
	var e WebhookEvent
	err := s.db.WithContext(ctx).Where("stripe_event_id = ?", stripeEventID).Take(&e).Error
	return e, err
}

// CountUnprocessed counts the events not yet applied.
func (s *Store) CountUnprocessed(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&WebhookEvent{}).Where("processed = false").Count(&n).Error
	return n, err
}

// IsNotFound reports whether err means no row matched.
func IsNotFound(err error) bool { return errors.Is(err, gorm.ErrRecordNotFound) }
