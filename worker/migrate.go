package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/store"
)

// runMigrate applies every pending migration. Running it again is a no-op;
// concurrent runs take turns on an advisory lock.
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
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if *createDB {
		created, err := store.CreateDatabase(ctx, cfg.Database.URL)
		if err != nil {
			return err
		}
		if created {
			logger.Info("database created")
		}
	}
	n, err := store.Migrate(ctx, cfg.Database.URL)
	if err != nil {
		return fmt.Errorf("worker migrate: %w", err)
	}
	logger.Info("migrations applied", "applied", n)
	return nil
}
