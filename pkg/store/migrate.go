package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"stripe-webhooks/migrations"
)

// Migrate applies every pending migration and returns how many it applied.
// Concurrent runs (several Kubernetes Jobs, or pods with an init step) take
// turns on a Postgres advisory lock; running it again is a no-op.
func Migrate(ctx context.Context, databaseURL string) (int, error) {
	db, err := openSQL(databaseURL, false)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	return migrateDB(ctx, db)
}

func migrateDB(ctx context.Context, db *sql.DB) (int, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSessionLocker(locker))
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	return len(results), nil
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
