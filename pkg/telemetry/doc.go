// Package telemetry is the services' OpenTelemetry tracing: Setup turns it
// on from the SDK's standard environment variables, Start opens a span,
// Traceparent and ContextWithTraceparent carry a trace through Redis and
// Postgres, and LogHandler puts trace_id and span_id on every log line
// written inside a span.
//
// # On and off
//
// Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, unless OTEL_SDK_DISABLED is
// true or OTEL_TRACES_EXPORTER is none. Off, Setup does nothing: no
// exporter, no goroutine, the global no-op provider; Start returns its
// context as it is and a no-op span without allocating, the HTTP and pgx
// instrumentation are not installed, no traceparent is stored or queued,
// and a delivery costs what it cost before tracing existed.
//
// On, spans go through a batch span processor (OTEL_BSP_*) to an OTLP
// exporter, over http/protobuf unless OTEL_EXPORTER_OTLP_PROTOCOL (or
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) is grpc; the exporter reads its
// endpoint, headers, compression, timeout and TLS settings from the
// environment itself. The resource is service.name (stripe-webhooks-ingest
// or stripe-webhooks-worker unless OTEL_SERVICE_NAME says otherwise),
// OTEL_RESOURCE_ATTRIBUTES, the host and the SDK. The SDK samples by
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default parentbased_always_on),
// and propagation is W3C trace context and baggage. The variables are read
// from the process environment, as the SDK reads them; a malformed one stops
// the command at start. The shutdown Setup returns flushes the spans still
// queued.
//
// # What is traced, and by what
//
//   - HTTP: the ingest's server span of each delivery is opened by a gin
//     handler of its own (ingest/tracing.go), continuing an incoming
//     traceparent, with the attributes the HTTP semantic conventions
//     require. otelhttp, the maintained net/http instrumentation, did the
//     same for twice the CPU per delivery traced (gin's own otelgin is not
//     served at a version of this SDK). The Stripe API client's requests (reconcile, resync)
//     are otelhttp's client spans.
//   - Postgres: otelpgx (github.com/exaring/otelpgx) is the pgx
//     connection's tracer, installed only when tracing is on. GORM runs on
//     database/sql over the same pgx driver, so its queries are traced by it
//     too, with no GORM plugin. Database spans are made only inside a span
//     that records, never as traces of their own.
//   - Redis: redigo has no maintained instrumentation, so pkg/queue opens
//     a client span by hand around each of its operations (one span per
//     pipelined round trip: enqueueing a batch, the sweeper's lookups,
//     putting a job back), again only inside a span that records.
//     gocraft/work's own traffic (fetching jobs, heartbeats) is not traced.
//   - The ingest's batch INSERT goes to pgconn with its parameters
//     already encoded, past pgx's tracer: pkg/store makes its span.
//   - The project's own spans (the ingest's batch, the worker's job,
//     group, claim, account locks, handler and commit, the sweeper's and
//     other periodic runs, replay, reconcile and resync) are opened with
//     Start; a delivery's verification and group commit are events on its
//     server span.
//
// # A delivery's trace
//
// The ingest stores the traceparent of each delivery's server span with
// its event (webhook_events.traceparent, NULL while tracing is off), and
// every process-webhook job of the event carries that same value in its
// traceparent argument (a job queued without one, as by an older version,
// runs as before, in a trace of its own). The worker's job span is thus a
// child of the delivery's span, whether the ingest queued the job or the
// sweeper or reconcile queued it later. The Inserter's batch span and the
// Applier's group span, each shared by many events, are children of the
// first sampled one and link to all of them.
//
// # What it costs
//
// ingest/cmd/bench's tracing row measures the ingest at 32 clients with
// tracing off and with every delivery sampled and exported: off costs
// nothing measurable against a build without tracing; on, about 30 µs of
// the ingest's CPU per delivery (span creation, and most of all the
// exporter's encoding of each span's attributes), about 15 % of
// throughput on a machine the ingest shares with Postgres, Redis and the
// load (the bench's README has the numbers). A delivery's steps are therefore events on its span rather than
// spans of their own, and sampling (parentbased_traceidratio) is how a
// busy deployment keeps the cost small.
package telemetry
