// Package replay applies stored events again: one by its Stripe id, or
// every event a filter selects. It is what `worker replay` and the
// console's replay buttons run. A replay takes the same row lock as the
// workers, so it is safe while they run, and the handlers keep their
// out-of-order guards: a replay never overwrites newer state. An event of
// the Stripe mode the deployment never applies (STRIPE_LIVEMODE) is never
// replayed.
package replay

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/telemetry"
	"stripe-webhooks/worker/handler"
)

// Outcome is what a replay of one event did.
type Outcome int

// The outcomes of a replay.
const (
	// Applied: the event's handler ran again and committed.
	Applied Outcome = iota + 1
	// Failed: the handler or the commit failed (Result.Err); the row
	// records it as an attempt would, unless the event was processed.
	Failed
	// OtherMode: the event is of the Stripe mode this deployment never
	// applies; nothing was done.
	OtherMode
	// NotFound: no stored event has that id.
	NotFound
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Failed:
		return "failed"
	case OtherMode:
		return "other_mode"
	case NotFound:
		return "not_found"
	}
	return "unknown"
}

// Result is the replay of one event.
type Result struct {
	StripeEventID, EventType, WebhookID string
	Outcome                             Outcome
	// Err is why the replay failed (Failed), or why the event could not be
	// read at all (Outcome 0).
	Err error
}

// Replayer replays stored events, each within Timeout.
type Replayer struct {
	store    *store.Store
	livemode config.Livemode
	// Timeout bounds the replay of one event.
	Timeout time.Duration
}

// New returns a Replayer for a deployment that applies the events of mode.
func New(st *store.Store, mode config.Livemode) *Replayer {
	return &Replayer{store: st, livemode: mode, Timeout: time.Minute}
}

// Event replays the stored event stripeEventID.
func (r *Replayer) Event(ctx context.Context, stripeEventID string) Result {
	res := Result{StripeEventID: stripeEventID}
	e, err := r.store.EventByStripeID(ctx, stripeEventID)
	switch {
	case store.IsNotFound(err):
		res.Outcome = NotFound
		return res
	case err != nil:
		res.Err = fmt.Errorf("replay: read event %s: %w", stripeEventID, err)
		return res
	}
	res.EventType, res.WebhookID = e.EventType, e.ID
	if e.Livemode != nil && !r.livemode.Applies(*e.Livemode) {
		res.Outcome = OtherMode
		return res
	}
	return r.apply(ctx, res)
}

// Filter selects the events Matching replays, besides the deployment's
// mode.
type Filter struct {
	// Since: events stored from then on.
	Since time.Time
	// Failed: events whose jobs exhausted their retries.
	Failed bool
	// EventType: only events of this type.
	EventType string
}

// batch is how many events one read of Matching returns.
const batch = 500

// Matching replays every event f selects that is of the deployment's mode,
// oldest first, and hands each result to each. It stops early only when
// ctx ends or the events cannot be read.
func (r *Replayer) Matching(ctx context.Context, f Filter, each func(Result)) error {
	filter := store.ReplayFilter{Since: f.Since, Failed: f.Failed, EventType: f.EventType}
	switch r.livemode.Mode { // events of the other mode are never applied
	case "live":
		filter.Livemode = &[]bool{true}[0]
	case "test":
		filter.Livemode = &[]bool{false}[0]
	}
	cursor := store.Cursor{}
	for {
		refs, err := r.store.ReplayBatch(ctx, filter, cursor, batch)
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		for _, e := range refs {
			if err := ctx.Err(); err != nil {
				return err
			}
			each(r.apply(ctx, Result{StripeEventID: e.StripeEventID, EventType: e.EventType, WebhookID: e.WebhookID}))
		}
		if len(refs) < batch {
			return nil
		}
		cursor = refs[len(refs)-1].Cursor()
	}
}

// apply replays the event of res under the row lock, within Timeout.
// Inside a span that records, it is the span "replay event", linked to the
// trace of the delivery that stored the event.
func (r *Replayer) apply(ctx context.Context, res Result) Result {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	ctx, span := telemetry.StartChild(ctx, "replay event", trace.SpanKindInternal)
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("stripe.event_id", res.StripeEventID), attribute.String("stripe.event_type", res.EventType),
			attribute.String("stripe_webhooks.webhook_id", res.WebhookID))
	}
	if _, _, err := r.store.ReplayEvent(ctx, res.WebhookID, handler.ApplyIn(r.livemode)); err != nil {
		telemetry.Fail(span, err)
		res.Outcome, res.Err = Failed, err
		return res
	}
	res.Outcome = Applied
	return res
}
