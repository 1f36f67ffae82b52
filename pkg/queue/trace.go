package queue

import (
	"context"

	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"stripe-webhooks/pkg/telemetry"
)

// startRedis opens the client span of one round trip to Redis, named
// after what it does ("redis enqueue"), with the command it sends and how
// many it pipelines. redigo has no maintained OpenTelemetry instrumentation,
// so these spans are made here, by hand, around each operation of this
// package; gocraft/work's own commands go untraced. Like the database's,
// they are made only inside a span that records (package telemetry).
func startRedis(ctx context.Context, name, command string, batch int) (context.Context, trace.Span) {
	ctx, span := telemetry.StartChild(ctx, name, trace.SpanKindClient)
	if span.IsRecording() {
		span.SetAttributes(semconv.DBSystemNameRedis, semconv.DBOperationName(command))
		if batch > 1 {
			span.SetAttributes(semconv.DBOperationBatchSize(batch))
		}
	}
	return ctx, span
}

// endRedis ends span, marking it failed by err.
func endRedis(span trace.Span, err error) {
	telemetry.Fail(span, err)
	span.End()
}
