package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/store"
)

// runMigrate applies every pending migration. Running it again is a no-op,
// and so is killing it at any moment: the next run repairs what it left.
// Concurrent runs take turns on an advisory lock.
//
// Deadlines: creating the database is a quick step, bounded to a minute;
// connecting is bounded by the store (5 s per attempt). The migrations
// themselves have none: an index build on a large table, or a wait behind
// another run's, takes as long as it takes, and is logged every 30 s.
// SIGTERM or SIGINT cancels the statement running and stops.
func runMigrate(ctx context.Context, args []string, environ []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	createDB := fs.Bool("create-database", false, "create the database first if it is missing")
	if err := fs.Parse(args); err != nil {
		return &config.UsageError{Msg: "worker migrate: " + err.Error(), Usage: usage}
	}
	cfg, err := config.LoadAdmin(environ)
	if err != nil {
		return err
	}
	logger := cfg.Log.Logger(stdout)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *createDB {
		if err := createDatabase(ctx, cfg.Database.URL, logger); err != nil {
			return err
		}
	}
	n, err := store.Migrate(ctx, cfg.Database.URL, store.MigrateOptions{Logger: logger})
	if err != nil {
		return fmt.Errorf("worker migrate: %w", err)
	}
	logger.Info("migrations applied", "applied", n)
	return nil
}

// createDatabase creates the database of databaseURL if it is missing,
// within a minute.
func createDatabase(ctx context.Context, databaseURL string, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	created, err := store.CreateDatabase(ctx, databaseURL)
	if err != nil {
		return err
	}
	if created {
		logger.Info("database created")
	}
	return nil
}
