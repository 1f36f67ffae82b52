package testenv

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// TraceReceiver is an OTLP/HTTP trace receiver in the test process: what
// the services' exporters send to OTEL_EXPORTER_OTLP_ENDPOINT=URL, decoded.
type TraceReceiver struct {
	URL string

	mu       sync.Mutex
	requests int
	spans    []Span
}

// Span is one span a TraceReceiver received, as the tests read it.
type Span struct {
	Service      string // the resource's service.name
	TraceID      string // hex
	SpanID       string
	ParentSpanID string // "" for a root span
	Name         string
	Kind         string // SPAN_KIND_SERVER, …
	Start, End   time.Time
	Attributes   map[string]string // values in their text form
	Resource     map[string]string
	Events       []string
	Links        []Link
	Error        string // the status message, when the status is an error
}

// Link is a span's link to another span.
type Link struct{ TraceID, SpanID string }

// Duration is the span's duration.
func (s Span) Duration() time.Duration { return s.End.Sub(s.Start) }

// NewTraceReceiver serves an OTLP/HTTP receiver (POST /v1/traces,
// protobuf, plain or gzip) until the test ends.
func NewTraceReceiver(t testing.TB) *TraceReceiver {
	t.Helper()
	r := &TraceReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// NewTraceReceiverOn is NewTraceReceiver on the listener ln (an address
// an exporter would use by default, say).
func NewTraceReceiverOn(t testing.TB, ln net.Listener) *TraceReceiver {
	t.Helper()
	r := &TraceReceiver{}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(r.serve)}}
	srv.Start()
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *TraceReceiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.requests++
	r.mu.Unlock()
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.Error(w, "not an OTLP trace export", http.StatusNotFound)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	raw, err := io.ReadAll(body)
	var export coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(raw, &export)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Add(&export)
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// Add keeps the spans of an export (a gRPC receiver's, say).
func (r *TraceReceiver) Add(export *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range export.GetResourceSpans() {
		resource := attributes(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, spanOf(s, resource))
			}
		}
	}
}

func spanOf(s *tracepb.Span, resource map[string]string) Span {
	out := Span{Service: resource["service.name"], Resource: resource, TraceID: hex.EncodeToString(s.GetTraceId()),
		SpanID: hex.EncodeToString(s.GetSpanId()), ParentSpanID: hex.EncodeToString(s.GetParentSpanId()),
		Name: s.GetName(), Kind: s.GetKind().String(), Attributes: attributes(s.GetAttributes()),
		Start: time.Unix(0, int64(s.GetStartTimeUnixNano())), End: time.Unix(0, int64(s.GetEndTimeUnixNano()))}
	for _, e := range s.GetEvents() {
		out.Events = append(out.Events, e.GetName())
	}
	for _, l := range s.GetLinks() {
		out.Links = append(out.Links, Link{TraceID: hex.EncodeToString(l.GetTraceId()), SpanID: hex.EncodeToString(l.GetSpanId())})
	}
	if s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		out.Error = s.GetStatus().GetMessage()
		if out.Error == "" {
			out.Error = "error"
		}
	}
	return out
}

func attributes(kvs []*commonpb.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.GetKey()] = x.StringValue
		case *commonpb.AnyValue_BoolValue:
			out[kv.GetKey()] = fmt.Sprint(x.BoolValue)
		case *commonpb.AnyValue_IntValue:
			out[kv.GetKey()] = fmt.Sprint(x.IntValue)
		case *commonpb.AnyValue_DoubleValue:
			out[kv.GetKey()] = fmt.Sprint(x.DoubleValue)
		default:
			out[kv.GetKey()] = v.String()
		}
	}
	return out
}

// Requests is how many requests the receiver has had, of any kind.
func (r *TraceReceiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Spans are the spans received so far.
func (r *TraceReceiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Trace is the spans received so far of the trace traceID, oldest first.
func (r *TraceReceiver) Trace(traceID string) []Span {
	var out []Span
	for _, s := range r.Spans() {
		if s.TraceID == traceID {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Find is the first span received for which match is true.
func (r *TraceReceiver) Find(match func(Span) bool) (Span, bool) {
	for _, s := range r.Spans() {
		if match(s) {
			return s, true
		}
	}
	return Span{}, false
}

// FormatTrace writes spans (one trace) as an indented tree: each span's
// service, name, duration, and its links, children under their parent.
func FormatTrace(spans []Span) string {
	children := map[string][]Span{}
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.SpanID] = true
	}
	var roots []Span
	for _, s := range spans {
		if s.ParentSpanID == "" || !ids[s.ParentSpanID] {
			roots = append(roots, s)
			continue
		}
		children[s.ParentSpanID] = append(children[s.ParentSpanID], s)
	}
	var b strings.Builder
	var write func(s Span, depth int)
	write = func(s Span, depth int) {
		fmt.Fprintf(&b, "%s%s  [%s]  %s", strings.Repeat("  ", depth), s.Name, s.Service, s.Duration().Round(time.Microsecond))
		if s.ParentSpanID != "" && !ids[s.ParentSpanID] {
			fmt.Fprintf(&b, "  (parent %s, not in this trace's spans)", s.ParentSpanID)
		}
		if len(s.Links) > 0 {
			fmt.Fprintf(&b, "  links: %d", len(s.Links))
		}
		if len(s.Events) > 0 {
			fmt.Fprintf(&b, "  events: %s", strings.Join(s.Events, "; "))
		}
		b.WriteString("\n")
		for _, c := range children[s.SpanID] {
			write(c, depth+1)
		}
	}
	for _, s := range roots {
		write(s, 0)
	}
	return b.String()
}
