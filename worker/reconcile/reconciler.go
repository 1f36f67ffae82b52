package reconcile

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
	"stripe-webhooks/pkg/telemetry"
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
	metrics  *Metrics
	livemode config.Livemode
	// retention is WEBHOOK_RETENTION (0: events are kept forever): no run
	// reaches back past it (see earliest).
	retention time.Duration
	// resync, if set, is run for each connected account found missing
	// events: what was missed may be older than Stripe's 30 days of events,
	// and only the account's current state restores it.
	resync *Resyncer
}

// Options are what a Reconciler works with.
type Options struct {
	Logger   *slog.Logger
	Store    *store.Store
	Enqueuer *queue.Enqueuer
	API      *stripeapi.Client
	// Metrics may be nil (the command-line run).
	Metrics  *Metrics
	Livemode config.Livemode
	// Retention is WEBHOOK_RETENTION (0: events are kept forever).
	Retention time.Duration
	// Resyncer, if set, resyncs each connected account found missing events.
	Resyncer *Resyncer
}

// New returns a Reconciler with o.
func New(o Options) *Reconciler {
	return &Reconciler{logger: o.Logger.With("task", "reconcile"), store: o.Store, enqueuer: o.Enqueuer, api: o.API,
		metrics: o.Metrics, livemode: o.Livemode, retention: o.Retention, resync: o.Resyncer}
}

// Window is which events a run looks at, by their `created` time: from
// Since (never before earliest) until Until (zero: now).
type Window struct {
	Since, Until time.Time
}

const (
	// DeliverySettle is how long Stripe's first delivery attempt of an
	// event may take before a periodic run counts it as missing.
	DeliverySettle = 5 * time.Minute
	// reconcileOverlap is how far before the end of an account's last
	// successful window its next periodic window starts. The windows would
	// join without it (created[gte] is inclusive); the overlap finds an
	// event Stripe listed only after its `created` time had been passed
	// (a delay on Stripe's side longer than DeliverySettle), for the cost
	// of listing again what was just checked: for most accounts the same
	// single request.
	reconcileOverlap = time.Hour
	// RetentionMargin keeps a run this far inside WEBHOOK_RETENTION. An
	// event's row is created after Stripe created the event, so an event
	// created within retention of now cannot have been deleted; the margin
	// covers clock differences between Stripe, Postgres and the hosts of
	// the workers. A retention run during a long reconcile is covered by
	// checking the limit again, against the clock of that moment, for each
	// page of events just before it is compared with the table
	// (storeMissing): the limit moves with the deletions.
	RetentionMargin = 15 * time.Minute
)

// earliest is the oldest `created` time of an event a run may take at now:
// Stripe lists 30 days, and an event older than WEBHOOK_RETENTION (less
// RetentionMargin) may have been applied and deleted by retention, so that
// stored again it would be applied again. why names the limit that applies.
func (r *Reconciler) earliest(now time.Time) (at time.Time, why string) {
	at, why = now.Add(-maxReconcileWindow), "Stripe's 30 days of events"
	if r.retention > 0 {
		if floor := now.Add(-r.retention + RetentionMargin); floor.After(at) {
			at, why = floor, fmt.Sprintf("WEBHOOK_RETENTION=%s (older events may have been applied and deleted; stored again they would be applied twice)",
				shortDuration(r.retention))
		}
	}
	return at, why
}

// shortDuration writes d without zero minutes and seconds: 72h, 71h45m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Summary is what one run did.
type Summary struct {
	// Accounts are the platform and the connected accounts the run took,
	// skipped ones included.
	Accounts int
	Listed   int // events Stripe listed
	Missing  int // of those, stored now (no delivery had stored them)
	// Skipped are the accounts whose access is revoked: deauthorized ones
	// Stripe's list no longer names (no request made), and those for which
	// Stripe refused a request so (stripeapi.Error.AccessRevoked).
	Skipped int
	// Failed are the accounts whose events could not be listed in full.
	Failed []string
	// Unreached is how many accounts were left when stop ended the run.
	Unreached int
}

// reconcileProgress is a run's progress, read by the progress display.
type reconcileProgress struct {
	total, done, listed, missing atomic.Int64
}

// target is one account a run reconciles, from since (zero: as far back
// as earliest allows).
type target struct {
	account string
	since   time.Time
}

// Run lists the events of the handled types created in w on the platform
// and on every connected account (those with a row, and those Stripe's
// API lists; deauthorized ones are skipped), or on account alone, and
// stores and queues the missing ones. An account that cannot be listed is
// reported in the summary; the others are reconciled all the same. It
// stops between accounts when stop ends, and reports the accounts left
// (ctx bounds the work itself); a rerun is safe.
func (r *Reconciler) Run(ctx, stop context.Context, w Window, account string, p *Progress) (Summary, error) {
	if account != "" {
		return r.run(ctx, stop, []target{{account: account, since: w.Since}}, 0, w.Until, false, p)
	}
	accounts, deauthorized, err := r.accounts(ctx)
	if err != nil {
		return Summary{}, err
	}
	targets := make([]target, len(accounts))
	for i, a := range accounts {
		targets[i] = target{account: a, since: w.Since}
	}
	return r.run(ctx, stop, targets, deauthorized, w.Until, false, p)
}

// RunPeriodic is a periodic run: it takes the accounts never taken first,
// then the least recently taken, so that a run stopped before the end of
// the list is resumed by the next; each account's window starts where its
// last successful one ended (less reconcileOverlap), so an account reached
// only every few runs is left no gap, and ends at until. Each account's
// progress is recorded as it is taken.
func (r *Reconciler) RunPeriodic(ctx, stop context.Context, until time.Time, p *Progress) (Summary, error) {
	accounts, deauthorized, err := r.accounts(ctx)
	if err != nil {
		return Summary{}, err
	}
	marks, err := r.store.ReconcileMarks(ctx)
	if err != nil {
		return Summary{}, err
	}
	slices.SortStableFunc(accounts, func(a, b string) int {
		ma, aTaken := marks[a]
		mb, bTaken := marks[b]
		switch {
		case aTaken && bTaken:
			return ma.AttemptedAt.Compare(mb.AttemptedAt)
		case aTaken:
			return 1 // never taken first
		case bTaken:
			return -1
		}
		return 0
	})
	targets := make([]target, len(accounts))
	earliest, why := r.earliest(time.Now())
	late := 0
	for i, a := range accounts {
		targets[i].account = a
		if m, ok := marks[a]; ok && m.ReconciledUntil != nil {
			targets[i].since = m.ReconciledUntil.Add(-reconcileOverlap)
			if targets[i].since.Before(earliest) {
				late++
			}
		}
	}
	if late > 0 {
		r.logger.Warn("accounts last reconciled before what a run may reach back to; their events in between are not checked",
			"accounts", late, "limit", why)
	}
	return r.run(ctx, stop, targets, deauthorized, until, true, p)
}

// run reconciles targets in order until stop ends, over windows ending at
// until; record keeps each account's progress (periodic runs).
// deauthorized counts the accounts skipped before the run.
func (r *Reconciler) run(ctx, stop context.Context, targets []target, deauthorized int, until time.Time, record bool,
	p *Progress) (Summary, error) {
	if p == nil {
		p = &Progress{}
	}
	p.Total.Store(int64(len(targets)))
	sum := Summary{Accounts: deauthorized, Skipped: deauthorized}
	types := handler.Types()
	for i, t := range targets {
		if stop.Err() != nil {
			sum.Unreached = len(targets) - i
			break
		}
		if record {
			if err := r.store.MarkReconcileAttempt(ctx, t.account, time.Now()); err != nil {
				return sum, err
			}
		}
		actx, span := startAccountSpan(ctx, t.account)
		listed, missing, err := r.reconcileAccount(actx, t, until, types)
		if err == nil && record {
			err = r.store.MarkReconciled(actx, t.account, until)
		}
		endAccountSpan(span, listed, missing, err)
		sum.Accounts++
		sum.Listed += listed
		sum.Missing += missing
		p.Done.Add(1)
		p.Listed.Add(int64(listed))
		p.Missing.Add(int64(missing))
		var apiErr *stripeapi.Error
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return sum, ctx.Err()
		case t.account != "" && errors.As(err, &apiErr) && apiErr.AccessRevoked():
			sum.Skipped++
			r.logger.InfoContext(actx, "access to the account is revoked (deauthorized); skipped", "account", t.account, "error", err)
		default:
			sum.Failed = append(sum.Failed, accountName(t.account))
			r.logger.ErrorContext(actx, "could not reconcile an account", "account", accountName(t.account), "error", err)
		}
	}
	return sum, nil
}

// accounts are the accounts to reconcile: the platform (""), the accounts
// Stripe's list names that have no row (those whose every event was
// missed), and the connected accounts with a row, less those deauthorized
// (by their row) that Stripe's list no longer names: Stripe refuses every
// request for them. One Stripe's list still names is taken: it may have
// authorized the platform again by an event that was missed. deauthorized
// is how many were left out.
func (r *Reconciler) accounts(ctx context.Context) (accounts []string, deauthorized int, err error) {
	known, err := r.store.KnownAccounts(ctx)
	if err != nil {
		return nil, 0, err
	}
	hasRow := make(map[string]bool, len(known))
	for _, k := range known {
		hasRow[k.StripeAccountID] = true
	}
	listed := map[string]bool{}
	accounts = []string{""}
	err = r.api.Accounts(ctx, func(id string) error {
		if !listed[id] && id != "" && !hasRow[id] {
			accounts = append(accounts, id)
		}
		listed[id] = true
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("reconcile: list connected accounts: %w", err)
	}
	for _, k := range known {
		switch {
		case k.StripeAccountID == "":
		case k.Deauthorized && !listed[k.StripeAccountID]:
			deauthorized++
		default:
			accounts = append(accounts, k.StripeAccountID)
		}
	}
	return accounts, deauthorized, nil
}

// reconcileAccount lists the events of t's account created from t.since
// (never before earliest) until until (zero: now) and stores the missing
// ones, a page of events at a time; a connected account found missing
// events is then resynced.
func (r *Reconciler) reconcileAccount(ctx context.Context, t target, until time.Time, types []string) (listed, missing int, err error) {
	since := t.since
	if earliest, _ := r.earliest(time.Now()); since.Before(earliest) {
		since = earliest
	}
	var page []stripeapi.Event
	flush := func() error {
		n, err := r.storeMissing(ctx, t.account, page)
		missing += n
		page = page[:0]
		return err
	}
	err = r.api.Events(ctx, t.account, since, types, func(e stripeapi.Event) error {
		if !until.IsZero() && e.Created.After(until) {
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
	if err == nil && missing > 0 && t.account != "" && r.resync != nil {
		if _, rerr := r.resync.Resync(ctx, t.account); rerr != nil {
			err = fmt.Errorf("resync after missing events: %w", rerr)
		}
	}
	return listed, missing, err
}

// storeMissing stores and queues those of events not stored yet. An event
// created before earliest, as of now, is left: retention may have deleted
// it since the listing began (see RetentionMargin). With tracing on, each
// is stored with the traceparent of ctx's span (the account's, in the
// run's trace), which its jobs carry.
func (r *Reconciler) storeMissing(ctx context.Context, account string, events []stripeapi.Event) (int, error) {
	earliest, _ := r.earliest(time.Now())
	events = slices.DeleteFunc(events, func(e stripeapi.Event) bool { return e.Created.Before(earliest) })
	if len(events) == 0 {
		return 0, nil
	}
	created := make(map[string]time.Time, len(events))
	for _, e := range events {
		created[e.ID] = e.Created
	}
	stored, err := r.store.StoredEventIDs(ctx, created)
	if err != nil {
		return 0, err
	}
	var jobs []queue.Job
	for _, e := range events {
		if stored[e.ID] {
			continue
		}
		row, err := r.store.InsertEvent(ctx, store.NewEvent{StripeEventID: e.ID, EventType: e.Type,
			Payload: withAccount(e.Raw, account), Created: e.Created, ReceivedAt: time.Now(), Livemode: e.Livemode,
			Traceparent: telemetry.Traceparent(ctx)})
		if err != nil {
			return len(jobs), err
		}
		if !row.Inserted {
			continue // a delivery stored it meanwhile
		}
		jobs = append(jobs, queue.Job{WebhookID: row.WebhookID, EventID: e.ID, EventType: e.Type, Traceparent: row.Traceparent})
		r.logger.WarnContext(ctx, "event missing from deliveries; stored from Stripe's API", "stripe_event_id", e.ID,
			"event_type", e.Type, "account", accountName(account), "created", e.Created.UTC().Format(time.RFC3339))
		if r.metrics != nil {
			r.metrics.missing.WithLabelValues(e.Type).Inc()
		}
	}
	if len(jobs) == 0 {
		return 0, nil
	}
	// A job lost here is queued by the sweeper: the rows are stored.
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := r.enqueuer.EnqueueMany(qctx, jobs); err != nil {
		r.logger.WarnContext(ctx, "missing events stored but not queued; the sweeper will queue them", "error", err, "events", len(jobs))
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

// ErrAccountsFailed says that some accounts could not be reconciled.
var ErrAccountsFailed = errors.New("some accounts could not be reconciled")

func (s Summary) String() string {
	out := fmt.Sprintf("accounts %d, events listed %d, missing %d stored, skipped %d", s.Accounts, s.Listed, s.Missing, s.Skipped)
	if len(s.Failed) > 0 {
		out += fmt.Sprintf("; %d accounts failed: %s", len(s.Failed), strings.Join(slices.Clone(s.Failed), ", "))
	}
	return out
}

// Periodically is one periodic run, counted and logged. It takes accounts
// until nine tenths of the time left before ctx's deadline have passed,
// leaving the rest to the account in hand; a run stopped so with accounts
// left is ok (they go first next run), one in which an account failed is
// not.
func (r *Reconciler) Periodically(ctx context.Context) error {
	began := time.Now()
	stop, cancel := context.WithCancel(ctx)
	if deadline, ok := ctx.Deadline(); ok {
		stop, cancel = context.WithDeadline(ctx, began.Add(time.Until(deadline)*9/10))
	}
	defer cancel()
	p := &Progress{}
	done := ShowProgress(io.Discard, r.logger, "reconcile", p, r.api) // a log line every 30 s
	sum, err := r.RunPeriodic(ctx, stop, began.Add(-DeliverySettle), p)
	done()
	r.metrics.skipped.Add(float64(sum.Skipped))
	if err == nil && len(sum.Failed) > 0 {
		err = fmt.Errorf("%w: %s", ErrAccountsFailed, strings.Join(sum.Failed, ", "))
	}
	if err != nil {
		r.metrics.runs.WithLabelValues("failed").Inc()
		return fmt.Errorf("reconcile: %w", err)
	}
	r.metrics.runs.WithLabelValues("ok").Inc()
	r.metrics.lastSuccess.Set(float64(time.Now().Unix()))
	msg := "reconcile finished"
	if sum.Unreached > 0 {
		msg = "reconcile ran out of time; the accounts left go first next run"
	}
	r.logger.InfoContext(ctx, msg, "accounts", sum.Accounts, "listed", sum.Listed, "missing", sum.Missing, "skipped", sum.Skipped,
		"unreached", sum.Unreached, "api_calls", r.api.Calls(), "seconds", time.Since(began).Seconds())
	return nil
}

// WindowSince is the window of a command-line run over the events created
// within since of now, clipped to what a run may reach back to; clipped
// says why when it was.
func (r *Reconciler) WindowSince(now time.Time, since time.Duration) (w Window, clipped string) {
	w = Window{Since: now.Add(-since)}
	if earliest, why := r.earliest(now); w.Since.Before(earliest) {
		clipped = fmt.Sprintf("--since %s reaches past %s: listing events created since %s (%s ago)",
			shortDuration(since), why, earliest.UTC().Format(time.RFC3339), shortDuration(now.Sub(earliest).Round(time.Minute)))
		w.Since = earliest
	}
	return w, clipped
}
