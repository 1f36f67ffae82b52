package store

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"stripe-webhooks/pkg/telemetry"
)

// The spans of applying events (package telemetry). Each is opened only
// inside a span that records (a job's, a group's, a replay's); off, none
// costs anything. The statements' own spans are otelpgx's, under these.

// noSpan records nothing: a context holding it makes no database span.
var noSpan = trace.SpanFromContext(context.Background())

// startStep opens the span of one step of applying events: store.claim,
// store.commit.
func startStep(ctx context.Context, name string) (context.Context, trace.Span) {
	return telemetry.StartChild(ctx, name, trace.SpanKindInternal)
}

// startApply opens the span of one event's handler, "apply <type>", with
// the event's ids.
func startApply(ctx context.Context, e WebhookEvent) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noSpan
	}
	ctx, span := telemetry.StartChild(ctx, "apply "+e.EventType, trace.SpanKindInternal)
	span.SetAttributes(attribute.String("stripe.event_id", e.StripeEventID), attribute.String("stripe.event_type", e.EventType),
		attribute.String("stripe_webhooks.webhook_id", e.ID))
	return ctx, span
}

// startGroupSpan opens a group's span (telemetry.StartShared: a child of
// its first sampled job's span, linked to each).
func startGroupSpan(ctx context.Context, jobs []*job) (context.Context, trace.Span) {
	if !telemetry.Enabled() {
		return telemetry.Start(ctx, "", trace.SpanKindInternal)
	}
	parents := make([]trace.SpanContext, len(jobs))
	for i, j := range jobs {
		parents[i] = trace.SpanContextFromContext(j.ctx)
	}
	ctx, span := telemetry.StartShared(ctx, "store.apply_group", parents)
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("stripe_webhooks.group.jobs", len(jobs)))
	}
	return ctx, span
}

// noteGroup records a group's outcome: on its span, what it claimed and a
// link to the trace of each event it applied (those of other traces than
// its own); on each job's span, an event and a link to the group's span.
func noteGroup(span trace.Span, g *group, err error) {
	if !span.IsRecording() {
		return
	}
	telemetry.Fail(span, err)
	name := "group commit"
	if err != nil {
		name = "group failed; applied alone"
	} else {
		span.SetAttributes(attribute.Int("stripe_webhooks.group.events", len(g.events)),
			attribute.Int("stripe_webhooks.group.ahead", g.claimedAhead()))
		for _, m := range g.events {
			telemetry.LinkTraceparent(span, m.Traceparent)
		}
	}
	sc := span.SpanContext()
	event := trace.WithAttributes(attribute.Int("stripe_webhooks.group.events", len(g.events)),
		attribute.String("stripe_webhooks.group.span_id", sc.SpanID().String()))
	for _, j := range g.jobs {
		if js := trace.SpanFromContext(j.ctx); js.IsRecording() {
			js.AddEvent(name, event)
			js.AddLink(trace.Link{SpanContext: sc})
		}
	}
}
