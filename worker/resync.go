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
	"stripe-webhooks/pkg/stripeapi"
	"stripe-webhooks/worker/handler"
)

// Resyncer applies connected accounts' current state, fetched from
// Stripe's API, as snapshots: what an event newer than the fetch wrote is
// kept (the handlers' per-object rules), external accounts Stripe no
// longer has are marked deleted.
type Resyncer struct {
	logger  *slog.Logger
	store   *store.Store
	api     *stripeapi.Client
	metrics *metrics
}

// Resync fetches one account (the account, then every page of its external
// accounts) and applies it in one transaction.
func (r *Resyncer) Resync(ctx context.Context, account string) (store.SnapshotReport, error) {
	takenAt := time.Now() // before the fetch: the snapshot is at least this new
	a, err := r.api.Account(ctx, account)
	if err != nil {
		return store.SnapshotReport{}, err
	}
	var raw []byte
	if a.LastResponse != nil {
		raw = a.LastResponse.RawJSON
	}
	snap, err := handler.AccountSnapshotOf(raw, takenAt)
	if err != nil {
		return store.SnapshotReport{}, fmt.Errorf("resync %s: %w", account, err)
	}
	err = r.api.ExternalAccounts(ctx, account, func(_ string, raw []byte) error {
		u, err := handler.ExternalAccountOf(raw, account)
		if err != nil {
			return fmt.Errorf("resync %s: %w", account, err)
		}
		snap.ExternalAccounts = append(snap.ExternalAccounts, u)
		return nil
	})
	if err != nil {
		return store.SnapshotReport{}, err
	}
	rep, err := r.store.ApplySnapshot(ctx, snap)
	if err != nil {
		return rep, err
	}
	if r.metrics != nil {
		r.metrics.resyncedAccounts.Inc()
	}
	if rep.Changed() {
		r.logger.Warn("account drifted from Stripe's state; resynced", "account", account,
			"account_fields", rep.AccountChanged, "capabilities_written", rep.CapabilitiesWritten,
			"capabilities_removed", rep.CapabilitiesRemoved, "external_accounts_upserted", rep.ExternalAccountsUpserted,
			"external_accounts_deleted", rep.ExternalAccountsDeleted)
	}
	return rep, nil
}

// tieResyncBatch is how many requested resyncs one read of them returns.
const tieResyncBatch = 100

// ResyncTies resyncs each account whose resync a same-second tie requested
// (store.Tie, with STRIPE_API_KEY) at least debounce ago, the oldest request
// first, until none is due or ctx ends. The snapshot, taken after the ties'
// second, settles them and deletes the request; a request still there
// afterwards (the resync failed, or Stripe's clock was ahead of ours) is
// due again after another debounce.
func (r *Resyncer) ResyncTies(ctx context.Context, debounce time.Duration) error {
	for {
		accounts, err := r.store.DueResyncRequests(ctx, time.Now().Add(-debounce), tieResyncBatch)
		if err != nil {
			return err
		}
		for _, account := range accounts {
			if _, err := r.Resync(ctx, account); err != nil {
				if ctx.Err() != nil {
					return err
				}
				r.logger.Warn("could not resync an account after a same-second tie; tried again after the debounce",
					"account", account, "error", err)
			}
			if err := r.store.PutOffResyncRequest(ctx, account, time.Now()); err != nil {
				return err
			}
		}
		if len(accounts) < tieResyncBatch {
			return nil
		}
	}
}

// tieResyncEvery is how often one replica looks for the resyncs ties
// requested: a third of the debounce, at least a second.
func tieResyncEvery(debounce time.Duration) time.Duration {
	return max(debounce/3, time.Second)
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
	c, err := openStripeCommand(environ, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	logger, api := c.logger, c.api
	r := &Resyncer{logger: logger.With("task", "resync"), store: c.store, api: api}

	accounts := []string{*account}
	if *all {
		accounts = accounts[:0]
		if err := api.Accounts(ctx, func(id string) error { accounts = append(accounts, id); return nil }); err != nil {
			return fmt.Errorf("worker resync: list connected accounts: %w", err)
		}
	}
	// Ctrl-C or SIGTERM stops after the account in hand.
	stop, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	p := &reconcileProgress{}
	p.total.Store(int64(len(accounts)))
	done := showProgress(stderr, logger, "resync", p, api)
	var changed, failed int
	for _, id := range accounts {
		if stop.Err() != nil {
			break
		}
		rep, err := r.Resync(ctx, id)
		p.done.Add(1)
		switch {
		case err != nil:
			failed++
			logger.Error("could not resync an account", "account", id, "error", err)
		case rep.Changed():
			changed++
			p.missing.Add(1)
		}
	}
	done()
	resynced := int(p.done.Load()) - failed
	fmt.Fprintf(stdout, "accounts %d, resynced %d, drifted %d, failed %d\n", len(accounts), resynced, changed, failed)
	switch {
	case stop.Err() != nil && int(p.done.Load()) < len(accounts):
		return fmt.Errorf("worker resync: stopped after %d of %d accounts (rerun it: it is safe)", p.done.Load(), len(accounts))
	case failed > 0:
		return fmt.Errorf("worker resync: %d accounts failed", failed)
	}
	return nil
}
