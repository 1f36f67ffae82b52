package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// noopSpan is what Start returns while tracing is off: it records nothing.
var noopSpan = trace.SpanFromContext(context.Background())

// Start opens a span named name, of kind, under ctx's span (a new trace
// when ctx holds none). Off, it returns ctx as it is and a span that
// records nothing, without allocating. Set attributes only when
// span.IsRecording(), so that building them costs nothing either.
func Start(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	p := current.Load()
	if p == nil {
		return ctx, noopSpan
	}
	return p.tracer.Start(ctx, name, trace.WithSpanKind(kind))
}

// StartChild is Start only inside a span that records (a client call of
// a traced operation); elsewhere it returns ctx and a span that records
// nothing, so that calls outside any operation (health checks, metrics
// scrapes) make no trace of their own.
func StartChild(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	p := current.Load()
	if p == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noopSpan
	}
	return p.tracer.Start(ctx, name, trace.WithSpanKind(kind))
}

// StartShared opens the span of work that several operations share (the
// ingest's batch of deliveries, the worker's group of events): a child of
// the first of parents that is sampled (or of the first, so that the
// sampler follows it), linked to each of them. Off, or with no valid
// parent, it returns ctx and a span that records nothing.
func StartShared(ctx context.Context, name string, parents []trace.SpanContext) (context.Context, trace.Span) {
	p := current.Load()
	if p == nil {
		return ctx, noopSpan
	}
	var parent trace.SpanContext
	links := make([]trace.Link, 0, len(parents))
	for _, sc := range parents {
		if !sc.IsValid() {
			continue
		}
		if !parent.IsValid() || (!parent.IsSampled() && sc.IsSampled()) {
			parent = sc
		}
		links = append(links, trace.Link{SpanContext: sc})
	}
	if !parent.IsValid() {
		return ctx, noopSpan
	}
	return p.tracer.Start(trace.ContextWithSpanContext(ctx, parent), name, trace.WithLinks(links...))
}

// traceContext reads and writes W3C traceparent headers.
var traceContext propagation.TraceContext

// Traceparent is the W3C traceparent of ctx's span ("00-<trace id>-<span
// id>-<flags>"): "" when tracing is off or ctx holds no valid span.
func Traceparent(ctx context.Context) string {
	if current.Load() == nil {
		return ""
	}
	carrier := propagation.MapCarrier{}
	traceContext.Inject(ctx, carrier)
	return carrier.Get("traceparent")
}

// ContextWithTraceparent returns ctx with the span traceparent names as
// its remote parent: a span started under it joins that trace. It returns
// ctx as it is when tracing is off or traceparent is empty or malformed.
func ContextWithTraceparent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" || current.Load() == nil {
		return ctx
	}
	sc, ok := SpanContextOf(traceparent)
	if !ok {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// SpanContextOf parses a W3C traceparent; ok is false when it is
// malformed or names no valid span.
func SpanContextOf(traceparent string) (sc trace.SpanContext, ok bool) {
	ctx := traceContext.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceparent})
	sc = trace.SpanContextFromContext(ctx)
	return sc, sc.IsValid()
}

// LinkTraceparent links span to the span traceparent names, unless span
// records nothing, traceparent is empty or malformed, or it names a span of
// span's own trace (already its ancestor or kin).
func LinkTraceparent(span trace.Span, traceparent string) {
	if traceparent == "" || !span.IsRecording() {
		return
	}
	sc, ok := SpanContextOf(traceparent)
	if !ok || sc.TraceID() == span.SpanContext().TraceID() {
		return
	}
	span.AddLink(trace.Link{SpanContext: sc})
}

// Fail marks span as failed by err, if it records and err is not nil.
func Fail(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}
