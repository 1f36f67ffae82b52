package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"stripe-webhooks/pkg/telemetry"
	"stripe-webhooks/pkg/testenv"
)

// These tests change the process's environment and OpenTelemetry's global
// provider: none runs in parallel.

// otelVars are every variable Setup or the SDK reads that a test sets.
var otelVars = []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME",
	"OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_BSP_SCHEDULE_DELAY"}

// env clears every OpenTelemetry variable for the test, then sets vars.
func env(t *testing.T, vars map[string]string) {
	t.Helper()
	for _, k := range otelVars {
		t.Setenv(k, "")
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
}

// setup runs Setup and shuts tracing down when the test ends.
func setup(t *testing.T) (logs *testenv.Buffer, shutdown func()) {
	t.Helper()
	logs = &testenv.Buffer{}
	stop, err := telemetry.Setup(context.Background(), "stripe-webhooks-test", slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := false
	shutdown = func() {
		if !done {
			done = true
			if err := stop(context.Background()); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		}
	}
	t.Cleanup(shutdown)
	return logs, shutdown
}

// With no endpoint set, Setup starts nothing: no exporter, no goroutine,
// the global provider stays the no-op one, and Start, Traceparent and
// ContextWithTraceparent allocate nothing.
func TestOffWithoutEndpoint(t *testing.T) {
	env(t, map[string]string{"OTEL_SERVICE_NAME": "svc", "OTEL_TRACES_SAMPLER": "always_on"})
	before := runtime.NumGoroutine()
	logs, _ := setup(t)
	if telemetry.Enabled() {
		t.Fatal("Enabled() with no endpoint set")
	}
	if _, sdk := otel.GetTracerProvider().(*sdktrace.TracerProvider); sdk {
		t.Error("the global tracer provider is the SDK's with no endpoint set")
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("goroutines: %d before Setup, %d after", before, after)
	}
	if logs.String() != "" {
		t.Errorf("Setup logged %q with tracing off", logs.String())
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		c, span := telemetry.Start(ctx, "x", trace.SpanKindServer)
		if span.IsRecording() || c != ctx {
			t.Fatal("Start made a span with tracing off")
		}
		span.End()
		if telemetry.Traceparent(c) != "" {
			t.Fatal("a traceparent with tracing off")
		}
		_ = telemetry.ContextWithTraceparent(c, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	})
	if allocs != 0 {
		t.Errorf("tracing off costs %v allocations per span, want 0", allocs)
	}
}

// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none keeps tracing off
// with an endpoint set: nothing reaches the endpoint.
func TestDisabledWithEndpoint(t *testing.T) {
	for _, vars := range []map[string]string{{"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}} {
		recv := testenv.NewTraceReceiver(t)
		vars["OTEL_EXPORTER_OTLP_ENDPOINT"] = recv.URL
		env(t, vars)
		_, shutdown := setup(t)
		if telemetry.Enabled() {
			t.Fatalf("Enabled() with %v", vars)
		}
		_, span := telemetry.Start(context.Background(), "x", trace.SpanKindInternal)
		span.End()
		shutdown()
		if n := recv.Requests(); n != 0 {
			t.Errorf("with %v the endpoint got %d requests", vars, n)
		}
	}
}

// With an endpoint, spans reach it over http/protobuf by default, with the
// default service.name unless OTEL_SERVICE_NAME names another, the
// attributes of OTEL_RESOURCE_ATTRIBUTES, and a child under its parent.
func TestExportsOverHTTP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		vars    map[string]string
		service string
	}{
		{"default service", map[string]string{}, "stripe-webhooks-test"},
		{"OTEL_SERVICE_NAME", map[string]string{"OTEL_SERVICE_NAME": "ingest-eu"}, "ingest-eu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recv := testenv.NewTraceReceiver(t)
			tc.vars["OTEL_EXPORTER_OTLP_ENDPOINT"] = recv.URL
			tc.vars["OTEL_RESOURCE_ATTRIBUTES"] = "deployment.environment.name=test"
			env(t, tc.vars)
			logs, shutdown := setup(t)
			if !strings.Contains(logs.String(), `"msg":"tracing on"`) {
				t.Errorf("no 'tracing on' line: %s", logs)
			}
			ctx, parent := telemetry.Start(context.Background(), "parent", trace.SpanKindServer)
			_, child := telemetry.Start(ctx, "child", trace.SpanKindInternal)
			child.End()
			parent.End()
			shutdown() // flushes
			p, ok := recv.Find(func(s testenv.Span) bool { return s.Name == "parent" })
			c, ok2 := recv.Find(func(s testenv.Span) bool { return s.Name == "child" })
			if !ok || !ok2 {
				t.Fatalf("spans received: %+v", recv.Spans())
			}
			if c.ParentSpanID != p.SpanID || c.TraceID != p.TraceID || p.Kind != "SPAN_KIND_SERVER" {
				t.Errorf("child %+v of parent %+v", c, p)
			}
			if p.Service != tc.service || p.Resource["deployment.environment.name"] != "test" {
				t.Errorf("resource %v, want service.name %s and OTEL_RESOURCE_ATTRIBUTES", p.Resource, tc.service)
			}
		})
	}
}

// OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports over gRPC.
func TestExportsOverGRPC(t *testing.T) {
	recv := &testenv.TraceReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, grpcReceiver{recv: recv})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	env(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + ln.Addr().String(), "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
	_, shutdown := setup(t)
	_, span := telemetry.Start(context.Background(), "over-grpc", trace.SpanKindInternal)
	span.End()
	shutdown()
	if _, ok := recv.Find(func(s testenv.Span) bool { return s.Name == "over-grpc" }); !ok {
		t.Errorf("no span over gRPC; got %+v", recv.Spans())
	}
}

type grpcReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	recv *testenv.TraceReceiver
}

func (g grpcReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.recv.Add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// The SDK samples by OTEL_TRACES_SAMPLER and _ARG: always_off and a ratio
// of 0 record nothing; parentbased_traceidratio follows a sampled parent
// whatever the ratio.
func TestSamplerFromEnvironment(t *testing.T) {
	sampled := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, tc := range []struct {
		sampler, arg, parent string
		want                 bool
	}{
		{"always_off", "", "", false},
		{"traceidratio", "0", "", false},
		{"parentbased_traceidratio", "0", "", false},
		{"parentbased_traceidratio", "0", sampled, true},
		{"always_on", "", "", true},
	} {
		recv := testenv.NewTraceReceiver(t)
		env(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": recv.URL, "OTEL_TRACES_SAMPLER": tc.sampler, "OTEL_TRACES_SAMPLER_ARG": tc.arg})
		_, shutdown := setup(t)
		ctx := telemetry.ContextWithTraceparent(context.Background(), tc.parent)
		_, span := telemetry.Start(ctx, "sampled?", trace.SpanKindInternal)
		got := span.IsRecording()
		span.End()
		shutdown()
		_, exported := recv.Find(func(testenv.Span) bool { return true })
		if got != tc.want || exported != tc.want {
			t.Errorf("%s %q parent %q: recording %v, exported %v; want %v", tc.sampler, tc.arg, tc.parent, got, exported, tc.want)
		}
	}
}

// A malformed variable is an error naming it, and turns nothing on.
func TestMalformedSettings(t *testing.T) {
	for name, vars := range map[string]map[string]string{
		"OTEL_EXPORTER_OTLP_PROTOCOL":        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
		"OTEL_TRACES_SAMPLER":                {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_SAMPLER": "sometimes"},
		"OTEL_TRACES_SAMPLER_ARG":            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "otel-collector:4318"},
		"OTEL_SDK_DISABLED":                  {"OTEL_SDK_DISABLED": "maybe"},
		"OTEL_TRACES_EXPORTER":               {"OTEL_TRACES_EXPORTER": "zipkin"},
	} {
		env(t, vars)
		_, err := telemetry.Setup(context.Background(), "svc", slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: error %v, want one naming %s", vars, err, name)
		}
		if telemetry.Enabled() {
			t.Errorf("%v: tracing on after a malformed setting", vars)
		}
	}
}

// A span's Traceparent, given to ContextWithTraceparent, makes the next
// span its child, as a job's span joins its delivery's; malformed ones are
// refused.
func TestTraceparentCarriesTheTrace(t *testing.T) {
	recv := testenv.NewTraceReceiver(t)
	env(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": recv.URL})
	setup(t)
	ctx, delivery := telemetry.Start(context.Background(), "delivery", trace.SpanKindServer)
	tp := telemetry.Traceparent(ctx)
	delivery.End()
	want := "00-" + delivery.SpanContext().TraceID().String() + "-" + delivery.SpanContext().SpanID().String() + "-01"
	if tp != want {
		t.Fatalf("Traceparent = %q, want %q", tp, want)
	}
	_, job := telemetry.Start(telemetry.ContextWithTraceparent(context.Background(), tp), "job", trace.SpanKindConsumer)
	defer job.End()
	if job.SpanContext().TraceID() != delivery.SpanContext().TraceID() {
		t.Errorf("job's trace %s, delivery's %s", job.SpanContext().TraceID(), delivery.SpanContext().TraceID())
	}
	for _, bad := range []string{"", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"00-00000000000000000000000000000000-b7ad6b7169203331-01"} {
		if _, ok := telemetry.SpanContextOf(bad); ok {
			t.Errorf("SpanContextOf(%q) accepted", bad)
		}
	}
}

// A line logged with a context inside a span carries its trace_id and
// span_id; one without carries neither.
func TestLogLinesCarryTheSpan(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil))).With("task", "x")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled})
	logger.InfoContext(trace.ContextWithSpanContext(context.Background(), sc), "inside")
	logger.InfoContext(context.Background(), "outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var in, out map[string]any
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &in) != nil || json.Unmarshal([]byte(lines[1]), &out) != nil {
		t.Fatalf("log: %s", buf.String())
	}
	if in["trace_id"] != sc.TraceID().String() || in["span_id"] != sc.SpanID().String() || in["task"] != "x" {
		t.Errorf("inside a span: %v", in)
	}
	if _, ok := out["trace_id"]; ok {
		t.Errorf("outside a span: %v", out)
	}
}

// The exporter's failures are logged, at most one line a minute.
func TestExportFailuresLoggedOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	env(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr, "OTEL_BSP_SCHEDULE_DELAY": "10"})
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "200")
	logs, _ := setup(t)
	failures := func() int { return strings.Count(logs.String(), "tracing: the OpenTelemetry SDK failed") }
	deadline := time.Now().Add(10 * time.Second)
	for failures() == 0 && time.Now().Before(deadline) {
		_, span := telemetry.Start(context.Background(), "lost", trace.SpanKindInternal)
		span.End()
		time.Sleep(50 * time.Millisecond)
	}
	// More failed exports within the minute add no line.
	for range 10 {
		_, span := telemetry.Start(context.Background(), "lost", trace.SpanKindInternal)
		span.End()
		time.Sleep(50 * time.Millisecond)
	}
	if n := failures(); n != 1 {
		t.Errorf("%d failure lines, want 1:\n%s", n, logs)
	}
}

// Check decides from a given environment as Setup does from the process's.
func TestCheckDecidesAsSetup(t *testing.T) {
	for _, tc := range []struct {
		environ []string
		on, bad bool
	}{
		{nil, false, false},
		{[]string{"OTEL_SERVICE_NAME=x"}, false, false},
		{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4318", "OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.1"}, true, false},
		{[]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://collector/v1/traces", "OTEL_SDK_DISABLED=true"}, false, false},
		{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4318", "OTEL_TRACES_SAMPLER_ARG=0.1", "OTEL_TRACES_SAMPLER=ratio"}, false, true},
	} {
		on, err := telemetry.Check(tc.environ)
		if on != tc.on || (err != nil) != tc.bad {
			t.Errorf("Check(%q) = %v, %v", tc.environ, on, err)
		}
	}
}
