package reconcile

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/telemetry"
)

// With tracing on (package telemetry), each account a run takes is a span
// of the run's ("reconcile account", "resync account"), holding its Stripe
// API requests (otelhttp) and its statements. The events a reconcile stores
// carry the traceparent of their account's span, so that their jobs join
// the run's trace.

// startAccountSpan opens the span of one account of a reconcile run.
func startAccountSpan(ctx context.Context, account string) (context.Context, trace.Span) {
	ctx, span := telemetry.StartChild(ctx, "reconcile account", trace.SpanKindInternal)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("stripe.account", accountName(account)))
	}
	return ctx, span
}

// endAccountSpan records what the account's reconcile found, and ends it.
func endAccountSpan(span trace.Span, listed, missing int, err error) {
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("stripe_webhooks.reconcile.listed", listed),
			attribute.Int("stripe_webhooks.reconcile.missing", missing))
		telemetry.Fail(span, err)
	}
	span.End()
}

// endResyncSpan records what an account's resync did, and ends its span.
func endResyncSpan(span trace.Span, account string, rep store.SnapshotReport, err error) {
	if span.IsRecording() {
		span.SetAttributes(attribute.String("stripe.account", account), attribute.Bool("stripe_webhooks.resync.drifted", rep.Changed()))
		telemetry.Fail(span, err)
	}
	span.End()
}
