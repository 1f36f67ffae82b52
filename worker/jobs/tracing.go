package jobs

import (
	"context"
	"time"

	"github.com/gocraft/work"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/telemetry"
)

// A job's span, with tracing on (package telemetry): "process
// process-webhook", a consumer span whose parent is the span its
// traceparent argument names (the delivery's), so that it joins the
// delivery's trace; a job without one starts a trace of its own. Under it
// are the store's spans: the group's (or, applied alone, the claim, the
// handler and the commit) and their statements'. A deferral and a
// scheduled retry are events on it; a failure sets its error status.

// startJobSpan opens the span of one run of the job wj, whose arguments
// are j.
func startJobSpan(wj *work.Job, j queue.Job) (context.Context, trace.Span) {
	ctx := telemetry.ContextWithTraceparent(context.Background(), j.Traceparent)
	ctx, span := telemetry.Start(ctx, "process "+queue.JobName, trace.SpanKindConsumer)
	if span.IsRecording() {
		span.SetAttributes(
			semconv.MessagingSystemKey.String("gocraft_work"),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(queue.JobName),
			semconv.MessagingMessageID(wj.ID),
			attribute.String("stripe.event_id", j.EventID),
			attribute.String("stripe.event_type", j.EventType),
			attribute.String("stripe_webhooks.webhook_id", j.WebhookID),
			attribute.Int64("stripe_webhooks.attempt", wj.Fails+1),
			attribute.Int("stripe_webhooks.deferred", queue.Deferrals(wj)))
	}
	return ctx, span
}

// noteOutcome records what the job did with its event: applied, already
// processed, missing.
func noteOutcome(span trace.Span, outcome store.Outcome) {
	if span.IsRecording() {
		span.SetAttributes(attribute.String("stripe_webhooks.outcome", outcome.String()))
	}
}

// noteDeferred records that the job was put back without an attempt
// counted, to run again at at (the n-th time).
func noteDeferred(ctx context.Context, cause error, at time.Time, n int) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.String("stripe_webhooks.outcome", "deferred"))
	span.AddEvent("deferred: not attempted; put back without counting an attempt", trace.WithAttributes(
		attribute.String("error", cause.Error()), attribute.String("retry_at", at.UTC().Format(time.RFC3339)),
		attribute.Int("stripe_webhooks.deferred", n)))
}

// noteFailed marks the job's span failed, with what follows: a retry at
// attempt.RetryAt, or the dead set.
func noteFailed(ctx context.Context, cause error, attempt store.Attempt) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.String("stripe_webhooks.outcome", "failed"))
	telemetry.Fail(span, cause)
	if attempt.Final {
		span.AddEvent("last attempt failed; the job goes to the dead set")
		return
	}
	span.AddEvent("retry scheduled", trace.WithAttributes(attribute.String("retry_at", attempt.RetryAt.UTC().Format(time.RFC3339))))
}
