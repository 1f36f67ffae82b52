package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripeapi"
	"stripe-webhooks/worker/handler"
)

// maxReconcileWindow is how far back Stripe's API lists events.
const maxReconcileWindow = 30 * 24 * time.Hour

// Reconciler finds the events Stripe created but never delivered (it gave
// up after three days, the endpoint was disabled, a wrong secret refused
// them) by listing them from Stripe's API, on the platform and on each
// connected account, and stores the missing ones through the same insert
// as a delivery: a delivery of the same event, before, during or after,
// is a duplicate of it, never a second row. Stored events are queued and
// applied by the workers like any other.
type Reconciler struct {
	logger   *slog.Logger
	store    *store.Store
	enqueuer *queue.Enqueuer
	api      *stripeapi.Client
	metrics  *metrics
	livemode config.Livemode
	// resync, if set, is run for each connected account found missing
	// events: what was missed may be older than Stripe's 30 days of events,
	// and only the account's current state restores it.
	resync *Resyncer
}

// NewReconciler returns a Reconciler; m may be nil (the command-line run).
func NewReconciler(logger *slog.Logger, st *store.Store, enq *queue.Enqueuer, api *stripeapi.Client, m *metrics, mode config.Livemode) *Reconciler {
	return &Reconciler{logger: logger.With("task", "reconcile"), store: st, enqueuer: enq, api: api, metrics: m, livemode: mode}
}

// Window is which events a run looks at, by their `created` time: from
// Since (at most 30 days back) until Until (zero: now).
type Window struct {
	Since, Until time.Time
}

// periodicWindow is the window of a periodic run: twice its interval back,
// so that each run overlaps the one before, until five minutes ago, so
// that an event whose delivery is still in flight is not taken for missing.
func periodicWindow(now time.Time, interval time.Duration) Window {
	return Window{Since: now.Add(-2*interval - deliverySettle), Until: now.Add(-deliverySettle)}
}

// deliverySettle is how long Stripe's first delivery attempt of an event
// may take before a run counts it as missing.
const deliverySettle = 5 * time.Minute

// ReconcileSummary is what one run did.
type ReconcileSummary struct {
	Accounts int // the platform and the connected accounts listed
	Listed   int // events Stripe listed
	Missing  int // of those, stored now (no delivery had stored them)
	// Failed are the accounts whose events could not be listed in full.
	Failed []string
}

// reconcileProgress is a run's progress, read by the progress display.
type reconcileProgress struct {
	total, done, listed, missing atomic.Int64
}

// Run lists the events of the handled types created since since (at most
// 30 days back) on the platform and on every connected account (those
// with a row, and those Stripe's API lists), or on account alone, and
// stores and queues the missing ones. An account that cannot be listed is
// reported in the summary; the others are reconciled all the same. It
// stops between accounts when stop ends (ctx bounds the work itself); a
// rerun is safe.
func (r *Reconciler) Run(ctx, stop context.Context, w Window, account string, p *reconcileProgress) (ReconcileSummary, error) {
	if p == nil {
		p = &reconcileProgress{}
	}
	if earliest := time.Now().Add(-maxReconcileWindow); w.Since.Before(earliest) {
		w.Since = earliest
	}
	accounts, err := r.accounts(ctx, account)
	if err != nil {
		return ReconcileSummary{}, err
	}
	p.total.Store(int64(len(accounts)))
	var sum ReconcileSummary
	types := handler.Types()
	for _, acct := range accounts {
		if err := stop.Err(); err != nil {
			return sum, fmt.Errorf("stopped after %d of %d accounts: %w", sum.Accounts, len(accounts), err)
		}
		listed, missing, err := r.reconcileAccount(ctx, acct, w, types)
		if err == nil && missing > 0 && acct != "" && r.resync != nil {
			if _, rerr := r.resync.Resync(ctx, acct); rerr != nil {
				err = fmt.Errorf("resync after missing events: %w", rerr)
			}
		}
		sum.Accounts++
		sum.Listed += listed
		sum.Missing += missing
		p.done.Add(1)
		p.listed.Add(int64(listed))
		p.missing.Add(int64(missing))
		if err != nil {
			if ctx.Err() != nil {
				return sum, ctx.Err()
			}
			sum.Failed = append(sum.Failed, accountName(acct))
			r.logger.Error("could not reconcile an account", "account", accountName(acct), "error", err)
		}
	}
	return sum, nil
}

// accounts are the platform ("") and every connected account, or only.
func (r *Reconciler) accounts(ctx context.Context, only string) ([]string, error) {
	if only != "" {
		return []string{only}, nil
	}
	known, err := r.store.AccountIDs(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{"": true}
	accounts := []string{""}
	for _, id := range known {
		if !seen[id] {
			seen[id] = true
			accounts = append(accounts, id)
		}
	}
	err = r.api.Accounts(ctx, func(id string) error {
		if !seen[id] {
			seen[id] = true
			accounts = append(accounts, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile: list connected accounts: %w", err)
	}
	return accounts, nil
}

// reconcileAccount lists one account's events and stores the missing ones,
// a page of events at a time.
func (r *Reconciler) reconcileAccount(ctx context.Context, account string, w Window, types []string) (listed, missing int, err error) {
	var page []stripeapi.Event
	flush := func() error {
		n, err := r.storeMissing(ctx, account, page)
		missing += n
		page = page[:0]
		return err
	}
	err = r.api.Events(ctx, account, w.Since, types, func(e stripeapi.Event) error {
		if !w.Until.IsZero() && e.Created.After(w.Until) {
			return nil // its delivery may be in flight; the next run looks again
		}
		listed++
		if !r.livemode.Applies(e.Livemode) {
			return nil // never applied here: not stored either
		}
		page = append(page, e)
		if len(page) == 100 {
			return flush()
		}
		return nil
	})
	if ferr := flush(); err == nil {
		err = ferr
	}
	return listed, missing, err
}

// storeMissing stores and queues those of events not stored yet.
func (r *Reconciler) storeMissing(ctx context.Context, account string, events []stripeapi.Event) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	stored, err := r.store.StoredEventIDs(ctx, ids)
	if err != nil {
		return 0, err
	}
	var jobs []queue.Job
	for _, e := range events {
		if stored[e.ID] {
			continue
		}
		row, err := r.store.InsertEvent(ctx, store.NewEvent{StripeEventID: e.ID, EventType: e.Type,
			Payload: withAccount(e.Raw, account), ReceivedAt: time.Now(), Livemode: e.Livemode})
		if err != nil {
			return len(jobs), err
		}
		if !row.Inserted {
			continue // a delivery stored it meanwhile
		}
		jobs = append(jobs, queue.Job{WebhookID: row.WebhookID, EventID: e.ID, EventType: e.Type})
		r.logger.Warn("event missing from deliveries; stored from Stripe's API", "stripe_event_id", e.ID,
			"event_type", e.Type, "account", accountName(account), "created", e.Created.UTC().Format(time.RFC3339))
		if r.metrics != nil {
			r.metrics.reconcileMissing.WithLabelValues(e.Type).Inc()
		}
	}
	if len(jobs) == 0 {
		return 0, nil
	}
	// A job lost here is queued by the sweeper: the rows are stored.
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := r.enqueuer.EnqueueMany(qctx, jobs); err != nil {
		r.logger.Warn("missing events stored but not queued; the sweeper will queue them", "error", err, "events", len(jobs))
	}
	return len(jobs), nil
}

// withAccount gives an event listed on a connected account the top-level
// `account` a Connect delivery carries, if Stripe's listing left it out:
// the handlers find the account there.
func withAccount(raw []byte, account string) []byte {
	if account == "" || gjson.GetBytes(raw, "account").Exists() || len(raw) < 2 || raw[0] != '{' {
		return raw
	}
	out := make([]byte, 0, len(raw)+len(account)+14)
	out = append(out, `{"account":"`...)
	out = append(out, account...)
	out = append(out, '"')
	if rest := strings.TrimSpace(string(raw[1:])); rest != "}" {
		out = append(out, ',')
	}
	return append(out, raw[1:]...)
}

func accountName(account string) string {
	if account == "" {
		return "platform"
	}
	return account
}

// errAccountsFailed says that some accounts could not be reconciled.
var errAccountsFailed = errors.New("some accounts could not be reconciled")

func (s ReconcileSummary) String() string {
	out := fmt.Sprintf("accounts %d, events listed %d, missing %d stored", s.Accounts, s.Listed, s.Missing)
	if len(s.Failed) > 0 {
		out += fmt.Sprintf("; %d accounts failed: %s", len(s.Failed), strings.Join(slices.Clone(s.Failed), ", "))
	}
	return out
}

// reconcilePeriodically is one periodic run, counted and logged.
func reconcilePeriodically(ctx context.Context, r *Reconciler, m *metrics, interval time.Duration) error {
	began := time.Now()
	p := &reconcileProgress{}
	done := showProgress(io.Discard, r.logger, "reconcile", p, r.api) // a log line every 30 s
	sum, err := r.Run(ctx, ctx, periodicWindow(began, interval), "", p)
	done()
	if err == nil && len(sum.Failed) > 0 {
		err = fmt.Errorf("%w: %s", errAccountsFailed, strings.Join(sum.Failed, ", "))
	}
	if err != nil {
		m.reconcileRuns.WithLabelValues("failed").Inc()
		return fmt.Errorf("reconcile: %w", err)
	}
	m.reconcileRuns.WithLabelValues("ok").Inc()
	m.reconcileLastSuccess.Set(float64(time.Now().Unix()))
	r.logger.Info("reconcile finished", "accounts", sum.Accounts, "listed", sum.Listed, "missing", sum.Missing,
		"api_calls", r.api.Calls(), "seconds", time.Since(began).Seconds())
	return nil
}
