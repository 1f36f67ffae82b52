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
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripeapi"
)

// progressEvery is how often a run without a terminal logs its progress.
const progressEvery = 30 * time.Second

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
	c, err := openStripeCommand(environ, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	cfg, logger, api := c.cfg, c.logger, c.api
	r := NewReconciler(logger, c.store, queue.NewEnqueuer(cfg.Redis.Namespace, c.pool), api, nil, cfg.Livemode, cfg.Retention)
	now := time.Now()
	w := Window{Since: now.Add(-*since)}
	if earliest, why := r.earliest(now); w.Since.Before(earliest) {
		fmt.Fprintf(stderr, "worker reconcile: --since %s reaches past %s: listing events created since %s (%s ago)\n",
			shortDuration(*since), why, earliest.UTC().Format(time.RFC3339), shortDuration(now.Sub(earliest).Round(time.Minute)))
		w.Since = earliest
	}

	// Ctrl-C or SIGTERM stops after the account in hand.
	stop, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	p := &reconcileProgress{}
	done := showProgress(stderr, logger, "reconcile", p, api)
	sum, err := r.Run(ctx, stop, w, *account, p)
	done()
	if err != nil {
		return fmt.Errorf("worker reconcile: %w (rerun it: what is stored stays stored)", err)
	}
	fmt.Fprintln(stdout, sum)
	logger.Info("reconcile finished", "accounts", sum.Accounts, "listed", sum.Listed, "missing", sum.Missing,
		"skipped_accounts", sum.Skipped, "failed_accounts", len(sum.Failed), "api_calls", api.Calls())
	switch {
	case sum.Unreached > 0:
		return fmt.Errorf("worker reconcile: stopped with %d accounts left (rerun it: what is stored stays stored)", sum.Unreached)
	case len(sum.Failed) > 0:
		return fmt.Errorf("worker reconcile: %w", errAccountsFailed)
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
}

// openStripeCommand loads the configuration and opens the backends of a
// command that talks to Stripe's API; close releases them.
func openStripeCommand(environ []string, stdout io.Writer) (*stripeCommand, error) {
	cfg, err := config.LoadReconcile(environ)
	if err != nil {
		return nil, err
	}
	logger := cfg.Log.Logger(stdout)
	st, err := store.Open(cfg.Database.URL, store.Options{MaxConns: 4, Logger: logger})
	if err != nil {
		return nil, err
	}
	return &stripeCommand{cfg: cfg, logger: logger, store: st, pool: queue.NewPool(cfg.Redis, 4),
		api: stripeapi.New(cfg.StripeAPI, logger)}, nil
}

func (c *stripeCommand) close() {
	_ = c.pool.Close()
	_ = c.store.Close()
}

func validAccountID(id string) bool {
	return len(id) > len("acct_") && id[:5] == "acct_"
}

// showProgress draws a progress bar on a terminal, or logs a progress line
// every 30 s otherwise, until the returned function is called.
func showProgress(out io.Writer, logger *slog.Logger, what string, p *reconcileProgress, api *stripeapi.Client) func() {
	began := time.Now()
	stopped := make(chan struct{})
	finished := make(chan struct{})
	describe := func() string {
		secs := max(time.Since(began).Seconds(), 0.001)
		return fmt.Sprintf("%d missing, %d API calls, %.1f calls/s", p.missing.Load(), api.Calls(), float64(api.Calls())/secs)
	}
	f, isFile := out.(*os.File)
	if isFile && term.IsTerminal(int(f.Fd())) {
		bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(out), progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(), progressbar.OptionSetItsString("accounts"), progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond))
		go func() {
			defer close(finished)
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				if total := p.total.Load(); total > 0 && bar.GetMax64() != total {
					bar.ChangeMax64(total)
				}
				_ = bar.Set64(p.done.Load())
				bar.Describe(what + ": " + describe())
				select {
				case <-stopped:
					_ = bar.Finish()
					return
				case <-tick.C:
				}
			}
		}()
	} else {
		go func() {
			defer close(finished)
			tick := time.NewTicker(progressEvery)
			defer tick.Stop()
			for {
				select {
				case <-stopped:
					return
				case <-tick.C:
					logger.Info(what+" progress", "accounts_done", p.done.Load(), "accounts", p.total.Load(),
						"listed", p.listed.Load(), "missing", p.missing.Load(), "api_calls", api.Calls())
				}
			}
		}()
	}
	return func() {
		close(stopped)
		<-finished
	}
}
