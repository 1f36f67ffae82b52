package main

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/telemetry"
)

// setupTracing turns tracing on if the environment asks for it
// (telemetry.Setup), before the command opens its store, so that its
// statements are traced too. The function it returns flushes the spans
// still queued, waiting at most 5 s for the collector.
func setupTracing(ctx context.Context, logger *slog.Logger) (func(), error) {
	stop, err := telemetry.Setup(ctx, "stripe-webhooks-worker", logger)
	if err != nil {
		return nil, &config.Error{Problems: []string{err.Error()}}
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stop(ctx); err != nil {
			logger.Warn("tracing: spans still queued could not be sent", "error", err)
		}
	}, nil
}

// commandSpan opens the root span of a command's run (replay, reconcile,
// resync); end records its error and ends it.
func commandSpan(ctx context.Context, name string) (context.Context, func(error)) {
	ctx, span := telemetry.Start(ctx, name, trace.SpanKindInternal)
	return ctx, func(err error) {
		telemetry.Fail(span, err)
		span.End()
	}
}
