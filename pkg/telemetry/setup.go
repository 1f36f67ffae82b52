package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// instrumentationName names the project's tracer.
const instrumentationName = "stripe-webhooks"

// provider is the tracing Setup turned on.
type provider struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
}

// current is the provider while tracing is on, nil while off.
var current atomic.Pointer[provider]

// Enabled reports whether Setup turned tracing on in this process.
func Enabled() bool { return current.Load() != nil }

// Setup turns tracing on if the environment asks for it (see the package
// documentation) and returns what flushes and stops it; with tracing off
// it does nothing and so does the function it returns. Its error names a
// malformed variable. logger receives one line saying whether tracing is
// on, and the exporter's failures, at most one line a minute.
func Setup(ctx context.Context, defaultServiceName string, logger *slog.Logger) (func(context.Context) error, error) {
	s, err := settingsFrom(os.Getenv)
	if err != nil || !s.on {
		return func(context.Context) error { return nil }, err
	}
	otel.SetErrorHandler(newErrorLog(logger))
	exp, err := s.exporter(ctx)
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(defaultServiceName)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
		resource.WithHost(),
		resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES is malformed: %w", err)
	}
	// The sampler comes from OTEL_TRACES_SAMPLER and _ARG, and the batch
	// processor's settings from OTEL_BSP_*: the SDK reads them.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	current.Store(&provider{tp: tp, tracer: tp.Tracer(instrumentationName)})
	service, _ := res.Set().Value(semconv.ServiceNameKey)
	logger.Info("tracing on", "endpoint", s.endpointHost, "protocol", s.protocol, "service_name", service.AsString(),
		"sampler", firstSet(os.Getenv("OTEL_TRACES_SAMPLER"), "parentbased_always_on"), "sampler_arg", os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	return func(ctx context.Context) error {
		current.Store(nil)
		err := tp.Shutdown(ctx)
		otel.SetTracerProvider(noop.NewTracerProvider())
		return err
	}, nil
}

// settings are the variables Setup decides by.
type settings struct {
	on           bool
	protocol     string // grpc or http/protobuf
	endpointHost string // scheme and host of the endpoint, for the log
}

// Vars are the variables of the OpenTelemetry SDK the services read, by
// Setup or by the SDK itself (the exporter's, the resource's, the
// sampler's, the batch processor's and the span limits).
var Vars = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
	"OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
	"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_EVENT_COUNT_LIMIT",
	"OTEL_SPAN_LINK_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
	"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
	"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
	"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
	"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
	"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
	"OTEL_EXPORTER_OTLP_CLIENT_KEY", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
}

// Check reports whether environ ("NAME=value" pairs, as os.Environ)
// turns tracing on, as Setup decides it, and names a variable Setup would
// refuse. It starts nothing.
func Check(environ []string) (on bool, err error) {
	vars := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	s, err := settingsFrom(func(k string) string { return vars[k] })
	return s.on && err == nil, err
}

// settingsFrom reads (with getenv) and checks the variables that turn
// tracing on and choose the exporter, and the sampler's, which the SDK
// would otherwise only warn about.
func settingsFrom(getenv func(string) string) (settings, error) {
	var s settings
	switch v := strings.ToLower(strings.TrimSpace(getenv("OTEL_SDK_DISABLED"))); v {
	case "true":
		return s, nil
	case "", "false":
	default:
		return s, errors.New("OTEL_SDK_DISABLED must be true or false")
	}
	switch v := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); v {
	case "none":
		return s, nil
	case "", "otlp":
	default:
		return s, errors.New("OTEL_TRACES_EXPORTER must be otlp or none")
	}
	name, endpoint := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		name, endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT", getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if endpoint == "" {
		return s, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return s, fmt.Errorf("%s is malformed: want a URL such as http://otel-collector:4318", name)
	}
	s.on, s.endpointHost = true, u.Scheme+"://"+u.Host
	s.protocol = firstSet(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf")
	if s.protocol != "grpc" && s.protocol != "http/protobuf" {
		return s, errors.New("OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf")
	}
	return s, checkSampler(getenv)
}

// checkSampler checks OTEL_TRACES_SAMPLER and its argument as the SDK
// will read them.
func checkSampler(getenv func(string) string) error {
	sampler := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	switch sampler {
	case "", "always_on", "always_off", "parentbased_always_on", "parentbased_always_off":
		return nil
	case "traceidratio", "parentbased_traceidratio":
	default:
		return errors.New("OTEL_TRACES_SAMPLER must be always_on, always_off, traceidratio, " +
			"parentbased_always_on, parentbased_always_off or parentbased_traceidratio")
	}
	arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
	if arg == "" {
		return nil // the SDK samples every trace
	}
	if r, err := strconv.ParseFloat(arg, 64); err != nil || r < 0 || r > 1 {
		return errors.New("OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1")
	}
	return nil
}

// exporter is the OTLP exporter of s.protocol; it reads its endpoint,
// headers, compression, timeout and TLS from the environment, and connects
// only when it first exports.
func (s settings) exporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	if s.protocol == "grpc" {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("the OTLP exporter's settings (OTEL_EXPORTER_OTLP_*) are malformed: %w", err)
	}
	return exp, nil
}

// errorLog logs the SDK's errors (an export that failed, spans dropped),
// at most one line a minute, with how many it left out.
type errorLog struct {
	logger  *slog.Logger
	mu      sync.Mutex
	last    time.Time
	skipped int
}

func newErrorLog(logger *slog.Logger) *errorLog { return &errorLog{logger: logger} }

// Handle implements otel.ErrorHandler.
func (l *errorLog) Handle(err error) {
	l.mu.Lock()
	if time.Since(l.last) < time.Minute {
		l.skipped++
		l.mu.Unlock()
		return
	}
	skipped := l.skipped
	l.last, l.skipped = time.Now(), 0
	l.mu.Unlock()
	l.logger.Warn("tracing: the OpenTelemetry SDK failed; spans may be lost", "error", err, "errors_not_logged", skipped)
}

// firstSet is the first of values that is not empty, in lower case.
func firstSet(values ...string) string {
	for _, v := range values {
		if v = strings.TrimSpace(v); v != "" {
			return strings.ToLower(v)
		}
	}
	return ""
}
