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

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripeapi"
	"stripe-webhooks/worker/reconcile"
)

// runReconcile is `worker reconcile [--since 72h] [--account acct_…]`.
func runReconcile(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	since := fs.Duration("since", 72*time.Hour, "list events created within this long (at most 720h, and within WEBHOOK_RETENTION)")
	account := fs.String("account", "", "reconcile this connected account alone (acct_…)")
	if err := fs.Parse(args); err != nil {
		return &config.UsageError{Msg: "worker reconcile: " + err.Error(), Usage: usage}
	}
	switch {
	case fs.NArg() > 0:
		return &config.UsageError{Msg: fmt.Sprintf("worker reconcile: unexpected arguments %q", fs.Args()), Usage: usage}
	case *since <= 0:
		return &config.UsageError{Msg: "worker reconcile: --since must be positive", Usage: usage}
	case *account != "" && !validAccountID(*account):
		return &config.UsageError{Msg: fmt.Sprintf("worker reconcile: --account %q is not an acct_… id", *account), Usage: usage}
	}
	c, err := openStripeCommand(ctx, environ, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	ctx, end := commandSpan(ctx, "reconcile")
	err = reconcileOnce(ctx, c, *since, *account, stderr, stdout)
	end(err)
	return err
}

// reconcileOnce is the run of `worker reconcile` over the events created
// within since (of account alone, if set).
func reconcileOnce(ctx context.Context, c *stripeCommand, since time.Duration, account string, stderr, stdout io.Writer) error {
	cfg, logger, api := c.cfg, c.logger, c.api
	r := reconcile.New(reconcile.Options{Logger: logger, Store: c.store, Enqueuer: queue.NewEnqueuer(cfg.Redis.Namespace, c.pool),
		API: api, Livemode: cfg.Livemode, Retention: cfg.Retention})
	w, clipped := r.WindowSince(time.Now(), since)
	if clipped != "" {
		fmt.Fprintln(stderr, "worker reconcile: "+clipped)
	}

	// Ctrl-C or SIGTERM stops after the account in hand.
	stop, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	p := &reconcile.Progress{}
	done := reconcile.ShowProgress(stderr, logger, "reconcile", p, api)
	sum, err := r.Run(ctx, stop, w, account, p)
	done()
	if err != nil {
		return fmt.Errorf("worker reconcile: %w (rerun it: what is stored stays stored)", err)
	}
	fmt.Fprintln(stdout, sum)
	logger.InfoContext(ctx, "reconcile finished", "accounts", sum.Accounts, "listed", sum.Listed, "missing", sum.Missing,
		"skipped_accounts", sum.Skipped, "failed_accounts", len(sum.Failed), "api_calls", api.Calls())
	switch {
	case sum.Unreached > 0:
		return fmt.Errorf("worker reconcile: stopped with %d accounts left (rerun it: what is stored stays stored)", sum.Unreached)
	case len(sum.Failed) > 0:
		return fmt.Errorf("worker reconcile: %w", reconcile.ErrAccountsFailed)
	}
	return nil
}

// stripeCommand is what `reconcile` and `resync` run with: their
// configuration, logger, store, Redis pool and Stripe API client.
type stripeCommand struct {
	cfg    config.Reconcile
	logger *slog.Logger
	store  *store.Store
	pool   *redis.Pool
	api    *stripeapi.Client
	// flushTraces sends the spans still queued (setupTracing).
	flushTraces func()
}

// openStripeCommand loads the configuration and opens the backends of a
// command that talks to Stripe's API; close releases them.
func openStripeCommand(ctx context.Context, environ []string, stdout io.Writer) (*stripeCommand, error) {
	cfg, err := config.LoadReconcile(environ)
	if err != nil {
		return nil, err
	}
	logger := cfg.Log.Logger(stdout)
	flushTraces, err := setupTracing(ctx, logger)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(cfg.Database.URL, store.Options{MaxConns: 4, Logger: logger})
	if err != nil {
		flushTraces()
		return nil, err
	}
	return &stripeCommand{cfg: cfg, logger: logger, store: st, pool: queue.NewPool(cfg.Redis, 4),
		api: stripeapi.New(cfg.StripeAPI, logger), flushTraces: flushTraces}, nil
}

func (c *stripeCommand) close() {
	_ = c.pool.Close()
	_ = c.store.Close()
	c.flushTraces()
}

func validAccountID(id string) bool {
	return len(id) > len("acct_") && id[:5] == "acct_"
}

// runResync is `worker resync (--account acct_… | --all)`.
func runResync(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("resync", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	account := fs.String("account", "", "resync this connected account (acct_…)")
	all := fs.Bool("all", false, "resync every connected account Stripe's API lists")
	if err := fs.Parse(args); err != nil {
		return &config.UsageError{Msg: "worker resync: " + err.Error(), Usage: usage}
	}
	switch {
	case fs.NArg() > 0:
		return &config.UsageError{Msg: fmt.Sprintf("worker resync: unexpected arguments %q", fs.Args()), Usage: usage}
	case (*account != "") == *all:
		return &config.UsageError{Msg: "worker resync: give one of --account or --all", Usage: usage}
	case *account != "" && !validAccountID(*account):
		return &config.UsageError{Msg: fmt.Sprintf("worker resync: --account %q is not an acct_… id", *account), Usage: usage}
	}
	c, err := openStripeCommand(ctx, environ, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	ctx, end := commandSpan(ctx, "resync")
	err = resyncAccounts(ctx, c, *account, *all, stderr, stdout)
	end(err)
	return err
}

// resyncAccounts is the run of `worker resync`: account, or every account
// Stripe's API lists.
func resyncAccounts(ctx context.Context, c *stripeCommand, account string, all bool, stderr, stdout io.Writer) error {
	logger, api := c.logger, c.api
	r := reconcile.NewResyncer(logger, c.store, api, nil)

	accounts := []string{account}
	if all {
		accounts = accounts[:0]
		if err := api.Accounts(ctx, func(id string) error { accounts = append(accounts, id); return nil }); err != nil {
			return fmt.Errorf("worker resync: list connected accounts: %w", err)
		}
	}
	// Ctrl-C or SIGTERM stops after the account in hand.
	stop, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	p := &reconcile.Progress{}
	p.Total.Store(int64(len(accounts)))
	done := reconcile.ShowProgress(stderr, logger, "resync", p, api)
	var changed, failed int
	for _, id := range accounts {
		if stop.Err() != nil {
			break
		}
		rep, err := r.Resync(ctx, id)
		p.Done.Add(1)
		switch {
		case err != nil:
			failed++
			logger.ErrorContext(ctx, "could not resync an account", "account", id, "error", err)
		case rep.Changed():
			changed++
			p.Missing.Add(1)
		}
	}
	done()
	resynced := int(p.Done.Load()) - failed
	fmt.Fprintf(stdout, "accounts %d, resynced %d, drifted %d, failed %d\n", len(accounts), resynced, changed, failed)
	switch {
	case stop.Err() != nil && int(p.Done.Load()) < len(accounts):
		return fmt.Errorf("worker resync: stopped after %d of %d accounts (rerun it: it is safe)", p.Done.Load(), len(accounts))
	case failed > 0:
		return fmt.Errorf("worker resync: %d accounts failed", failed)
	}
	return nil
}
