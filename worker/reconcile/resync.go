package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripeapi"
	"stripe-webhooks/pkg/telemetry"
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
	metrics *Metrics
}

// NewResyncer returns a Resyncer; m may be nil (the command-line run).
func NewResyncer(logger *slog.Logger, st *store.Store, api *stripeapi.Client, m *Metrics) *Resyncer {
	return &Resyncer{logger: logger.With("task", "resync"), store: st, api: api, metrics: m}
}

// Resync fetches one account (the account, then every page of its external
// accounts) and applies it in one transaction.
func (r *Resyncer) Resync(ctx context.Context, account string) (rep store.SnapshotReport, err error) {
	ctx, span := telemetry.StartChild(ctx, "resync account", trace.SpanKindInternal)
	defer func() { endResyncSpan(span, account, rep, err) }()
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
	rep, err = r.store.ApplySnapshot(ctx, snap)
	if err != nil {
		return rep, err
	}
	if r.metrics != nil {
		r.metrics.resynced.Inc()
	}
	if rep.Changed() {
		r.logger.WarnContext(ctx, "account drifted from Stripe's state; resynced", "account", account,
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

// TieResyncEvery is how often one replica looks for the resyncs ties
// requested: a third of the debounce, at least a second.
func TieResyncEvery(debounce time.Duration) time.Duration {
	return max(debounce/3, time.Second)
}
