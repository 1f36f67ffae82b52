package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"stripe-webhooks/ingest/loadgen"
)

// Tracing is the ingest at one concurrency with tracing off and with every
// delivery sampled and exported over OTLP/HTTP to a receiver in the
// bench's process, measured in alternating rounds (and, with
// -tracing-baseline, an ingest built from an earlier commit, before tracing
// existed).
type Tracing struct {
	Concurrency int `json:"concurrency"`
	// Off, On and Baseline are each round's measure.
	Off      []TracingMeasure `json:"off"`
	On       []TracingMeasure `json:"on"`
	Baseline []TracingMeasure `json:"baseline,omitempty"`
	// OnOverOff is the throughput with tracing on over off (means of the
	// rounds); OffOverBaseline the same of off over the baseline.
	OnOverOff       float64 `json:"on_over_off"`
	OffOverBaseline float64 `json:"off_over_baseline,omitempty"`
}

// TracingMeasure is one measure of the tracing row.
type TracingMeasure struct {
	Ingest loadgen.Report `json:"ingest"`
	CPU    cpuShare       `json:"cpu"`
	// Spans and ServerSpans are what the receiver got during the measure
	// (with tracing on): every span, and the deliveries' server spans.
	Spans       int64 `json:"spans,omitempty"`
	ServerSpans int64 `json:"server_spans,omitempty"`
}

// measureTracing measures the tracing row, unless -tracing-c is 0.
func measureTracing(ctx context.Context, h *harness, o options) (*Tracing, error) {
	if o.tracingC <= 0 {
		return nil, nil
	}
	recv, err := startSpanCounter()
	if err != nil {
		return nil, err
	}
	defer recv.close()
	off := withoutOTel(h.env)
	on := withEnv(off, "OTEL_EXPORTER_OTLP_ENDPOINT="+recv.url, "OTEL_TRACES_SAMPLER=always_on",
		fmt.Sprintf("OTEL_BSP_SCHEDULE_DELAY=%d", exportSettle.Milliseconds()))
	t := &Tracing{Concurrency: o.tracingC}
	ingest := filepath.Join(o.bin, "ingest")
	for round := range o.tracingRounds {
		if o.tracingBaseline != "" {
			m, err := measureTraced(ctx, h, filepath.Join(o.tracingBaseline, "ingest"), off, o, nil)
			if err != nil {
				return nil, fmt.Errorf("tracing baseline: %w", err)
			}
			t.Baseline = append(t.Baseline, m)
		}
		fmt.Fprintf(os.Stderr, "tracing: round %d of %d, %d clients, off and on…\n", round+1, o.tracingRounds, o.tracingC)
		m, err := measureTraced(ctx, h, ingest, off, o, nil)
		if err != nil {
			return nil, fmt.Errorf("tracing off: %w", err)
		}
		t.Off = append(t.Off, m)
		if m, err = measureTraced(ctx, h, ingest, on, o, recv); err != nil {
			return nil, fmt.Errorf("tracing on: %w", err)
		}
		t.On = append(t.On, m)
	}
	t.OnOverOff = meanPerSecond(t.On) / meanPerSecond(t.Off)
	if len(t.Baseline) > 0 {
		t.OffOverBaseline = meanPerSecond(t.Off) / meanPerSecond(t.Baseline)
	}
	return t, nil
}

// measureTraced measures the ingest at path with env on an emptied
// database, as measureServer does, counting what recv (if any) receives
// meanwhile: the spans of the warm-up are exported before the count
// starts, and those of the measure before it ends (env exports every
// exportSettle at least).
func measureTraced(ctx context.Context, h *harness, path string, env []string, o options, recv *spanCounter) (TracingMeasure, error) {
	if err := h.reset(ctx); err != nil {
		return TracingMeasure{}, err
	}
	p, err := startService(ctx, path, nil, withEnv(env, "SHUTDOWN_TIMEOUT=5s"), "PORT")
	if err != nil {
		return TracingMeasure{}, err
	}
	defer p.Stop()
	lo := loadgen.Options{URL: p.Base + webhookPath, Secret: secret, Concurrency: o.tracingC, EventType: "account.updated"}
	lo.Duration = time.Second // warm up: connections, pools, caches
	if _, err := loadgen.Run(ctx, lo); err != nil {
		return TracingMeasure{}, err
	}
	var m TracingMeasure
	time.Sleep(2 * exportSettle)
	spans, servers, err := recv.count()
	if err != nil {
		return TracingMeasure{}, err
	}
	lo.Duration = o.dur
	mark := markCPU()
	m.Ingest, err = loadgen.Run(ctx, lo)
	m.CPU = mark.since(max(m.Ingest.Status["200"], 1))
	if err != nil {
		return m, err
	}
	time.Sleep(2 * exportSettle)
	s, sv, err := recv.count()
	m.Spans, m.ServerSpans = s-spans, sv-servers
	return m, err
}

// exportSettle is the batch span processor's schedule delay with tracing
// on (OTEL_BSP_SCHEDULE_DELAY): queued spans are exported at least so often.
const exportSettle = 200 * time.Millisecond

func meanPerSecond(ms []TracingMeasure) float64 {
	var sum float64
	for _, m := range ms {
		sum += m.Ingest.PerSecond
	}
	return sum / float64(max(len(ms), 1))
}

// withoutOTel is env without any OTEL_ variable: tracing off, whatever the
// bench's own environment says.
func withoutOTel(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "OTEL_") {
			out = append(out, kv)
		}
	}
	return out
}

// spanCounter is an OTLP/HTTP trace receiver that keeps each export's
// body and counts its spans, and its server spans (one per delivery),
// when asked (count): decoding an export costs about what making its spans
// cost the ingest, and a collector does it on a machine of its own, not on
// the two cores the ingest is measured on.
type spanCounter struct {
	url string
	srv *http.Server

	mu             sync.Mutex
	bodies         [][]byte // received, not counted yet
	spans, servers int64
}

func startSpanCounter() (*spanCounter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &spanCounter{url: "http://" + ln.Addr().String()}
	c.srv = &http.Server{Handler: http.HandlerFunc(c.serve)}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

// exportAnswer is an empty ExportTraceServiceResponse: every span accepted.
var exportAnswer, _ = proto.Marshal(&coltracepb.ExportTraceServiceResponse{})

func (c *spanCounter) serve(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.bodies = append(c.bodies, raw)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(exportAnswer)
}

// count decodes the exports received since the last count and returns the
// spans and server spans received so far; 0, 0 for no counter. An export
// that does not decode is an error: the ingest sent something that is not
// OTLP.
func (c *spanCounter) count() (spans, servers int64, err error) {
	if c == nil {
		return 0, 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, raw := range c.bodies {
		var export coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(raw, &export); err != nil {
			return 0, 0, fmt.Errorf("tracing receiver: an export that is not OTLP: %w", err)
		}
		for _, rs := range export.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					c.spans++
					if s.GetKind() == tracepb.Span_SPAN_KIND_SERVER {
						c.servers++
					}
				}
			}
		}
	}
	c.bodies = nil
	return c.spans, c.servers, nil
}

func (c *spanCounter) close() { _ = c.srv.Close() }

// printTracing prints the tracing row: each round's throughput and CPU per
// delivery, and the ratios.
func printTracing(w io.Writer, t *Tracing) {
	if t == nil {
		return
	}
	fmt.Fprintf(w, "\ntracing, ingest alone at %d clients (on: every delivery sampled, exported over OTLP/HTTP to a receiver in the bench)\n\n", t.Concurrency)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tracing\tround\tingest/s\tp50 ms\tp99 ms\tCPU µs/delivery: ingest\tpostgres\tredis\tmachine\tspans/delivery\tdeliveries exported\t")
	line := func(name string, ms []TracingMeasure) {
		for i, m := range ms {
			per, exported := "", ""
			if m.Spans > 0 {
				n := float64(max(m.Ingest.Status["200"], 1))
				per, exported = fmt.Sprintf("%.1f", float64(m.Spans)/n), fmt.Sprintf("%.0f %%", 100*float64(m.ServerSpans)/n)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%s\t\n", name, i+1, m.Ingest.PerSecond,
				m.Ingest.P50Ms, m.Ingest.P99Ms, m.CPU.IngestUs, m.CPU.PostgresUs, m.CPU.RedisUs, m.CPU.MachineUs, per, exported)
		}
	}
	line("before", t.Baseline)
	line("off", t.Off)
	line("on", t.On)
	tw.Flush()
	fmt.Fprintf(w, "\ntracing on/off: %.2f x throughput (target ≥ 0.85), ingest CPU %.0f → %.0f µs per delivery",
		t.OnOverOff, meanIngestCPU(t.Off), meanIngestCPU(t.On))
	if t.OffOverBaseline > 0 {
		fmt.Fprintf(w, "; off/before: %.2f x throughput, ingest CPU %.0f → %.0f µs", t.OffOverBaseline, meanIngestCPU(t.Baseline), meanIngestCPU(t.Off))
	}
	fmt.Fprintln(w)
}

func meanIngestCPU(ms []TracingMeasure) float64 {
	var sum float64
	for _, m := range ms {
		sum += m.CPU.IngestUs
	}
	return sum / float64(max(len(ms), 1))
}
