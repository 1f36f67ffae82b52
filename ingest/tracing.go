package main

import (
	"context"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripeevent"
)

// A delivery's span, with tracing on (package telemetry): the server span
// of the webhook route (traceDelivery, continuing an incoming traceparent,
// with the HTTP semantic conventions and the event's stripe.* attributes). Its
// steps are events on it, which cost a fraction of a span each: the
// signature verified (or refused), the group commit it joined (with a
// link to the batch's span, pkg/store's store.insert_batch, which holds
// the INSERT and the enqueue to Redis), and the job not queued when Redis
// failed. As child spans they were 2.5 more spans per delivery to make and
// export (ingest/cmd/bench's README gives what each choice cost).
// The other routes are not traced.

// spanName is the server span's name: the method and the route.
const spanName = http.MethodPost + " " + WebhookPath

// traceDelivery is the first handler of the webhook route with tracing on:
// it opens the delivery's server span, continuing the trace of an incoming
// traceparent (the global W3C propagator), with the attributes the HTTP
// semantic conventions require of a server span (http.request.method,
// url.path, url.scheme, http.route, http.response.status_code, error.type
// for a 5xx, which is also an error status) and client.address, and ends
// it with the answer. It is written here rather than taken from otelhttp:
// otelhttp's wrapping of the request and the response, its metrics, and
// the dozen more attributes every span then carries to the collector,
// doubled what tracing every delivery cost the ingest: 58 µs of CPU per
// delivery against 28 (ingest/cmd/bench's tracing row).
func traceDelivery() gin.HandlerFunc {
	tracer := otel.Tracer("stripe-webhooks/ingest")
	propagator := otel.GetTextMapPropagator()
	return func(c *gin.Context) {
		r := c.Request
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		ctx, span := tracer.Start(ctx, spanName, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			semconv.HTTPRequestMethodPost, semconv.URLPath(r.URL.Path), semconv.URLScheme(scheme),
			semconv.HTTPRoute(WebhookPath), semconv.ClientAddress(c.ClientIP())))
		defer span.End()
		c.Request = r.WithContext(ctx)
		c.Next()
		status := c.Writer.Status()
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= http.StatusInternalServerError {
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
			span.SetStatus(codes.Error, "")
		}
	}
}

// verify checks a delivery's signature, and notes the outcome on its span.
func verify(ctx context.Context, v *stripeevent.Verifier, payload []byte, signature string) (stripeevent.Event, error) {
	event, err := v.Verify(payload, signature)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		if err != nil {
			span.AddEvent("signature refused", trace.WithAttributes(attribute.String("error", err.Error())))
		} else {
			span.AddEvent("signature verified")
		}
	}
	return event, err
}

// describeDelivery puts the verified event's ids on the delivery's span.
func describeDelivery(ctx context.Context, event stripeevent.Event, payload []byte) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.String("stripe.event_id", event.ID),
		attribute.String("stripe.event_type", event.Type),
		attribute.String("stripe.account", store.EventAccount(payload)),
		attribute.Bool("stripe.livemode", event.Livemode))
}

// noteNotQueued records on the delivery's span that its event was stored
// but its job not queued (the sweeper queues it).
func noteNotQueued(span trace.Span, err error) {
	if span.IsRecording() {
		span.AddEvent("not queued; the sweeper queues it", trace.WithAttributes(attribute.String("error", err.Error())))
	}
}
