package main

import (
	"database/sql"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/testkit"
)

// tracingTo is the environment that sends a service's spans to recv,
// each batch within 50 ms.
func tracingTo(recv *testenv.TraceReceiver) map[string]string {
	return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": recv.URL, "OTEL_BSP_SCHEDULE_DELAY": "50"}
}

// postTraced delivers payload, signed, with the extra header h, and
// returns the status.
func postTraced(t *testing.T, base string, payload []byte, h http.Header) int {
	t.Helper()
	return postWith(t, base+"/api/billing/webhooks/stripe", payload, h)
}

// deliveryTrace waits until the ingest's server span of the event id and
// the worker's job span that applied it have arrived, with the spans named
// want (the trace's other spans arrive with them), and returns the two and
// the whole trace.
func deliveryTrace(t *testing.T, recv *testenv.TraceReceiver, id string, want ...string) (server, job testenv.Span, spans []testenv.Span) {
	t.Helper()
	var found bool
	testenv.Eventually(t, 30*time.Second, "the delivery's trace to arrive", func() bool {
		server, found = recv.Find(func(s testenv.Span) bool {
			return s.Service == "stripe-webhooks-ingest" && s.Kind == "SPAN_KIND_SERVER" && s.Attributes["stripe.event_id"] == id
		})
		if !found {
			return false
		}
		job, found = recv.Find(func(s testenv.Span) bool {
			return s.Service == "stripe-webhooks-worker" && s.Name == "process process-webhook" &&
				s.Attributes["stripe.event_id"] == id && s.Attributes["stripe_webhooks.outcome"] == "applied"
		})
		spans = recv.Trace(server.TraceID)
		names := map[string]bool{}
		for _, s := range spans {
			names[s.Name] = true
		}
		for _, n := range want {
			found = found && names[n]
		}
		return found
	})
	return server, job, spans
}

// logTraceIDs are the trace_id of each line of logs whose msg is msg
// about the event id.
func logTraceIDs(logs, msg, id string) []string {
	var ids []string
	for _, line := range strings.Split(logs, "\n") {
		var l struct {
			Msg     string `json:"msg"`
			ID      string `json:"stripe_event_id"`
			TraceID string `json:"trace_id"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == msg && l.ID == id {
			ids = append(ids, l.TraceID)
		}
	}
	return ids
}

// storedTraceparent is the traceparent column of the event id.
func storedTraceparent(t *testing.T, b *testkit.Backend, id string) sql.NullString {
	t.Helper()
	var tp sql.NullString
	if err := b.Store.DB().Raw("SELECT traceparent FROM webhook_events WHERE stripe_event_id = ?", id).Row().Scan(&tp); err != nil {
		t.Fatal(err)
	}
	return tp
}

// One signed delivery through bin/ingest and bin/worker is one trace: the
// ingest's server span (stripe.* attributes, HTTP conventions, its
// verification and group commit as events), the batch it joined (its
// INSERT and the enqueue to Redis) and, under the delivery's span, the
// worker's job span with the group, claim, handler, commit and their
// statements. Both services' log
// lines about it carry its trace_id, and the event row keeps the
// delivery's traceparent.
func TestTraceOneDeliveryThroughIngestAndWorker(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	recv := testenv.NewTraceReceiver(t)
	ingest := startIngest(t, b, tracingTo(recv))
	worker := startWorkerProcess(t, b, tracingTo(recv))
	// A first delivery opens the services' connections, so that the trace
	// logged below is that of a delivery to a running stack.
	warm := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_warm"})
	if code := postTraced(t, ingest.Base, warm, nil); code != http.StatusOK {
		t.Fatalf("first delivery answered %d", code)
	}
	deliveryTrace(t, recv, testkit.EventID(warm))
	payload := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_traced"})
	id := testkit.EventID(payload)
	if code := postTraced(t, ingest.Base, payload, nil); code != http.StatusOK {
		t.Fatalf("delivery answered %d", code)
	}
	server, job, spans := deliveryTrace(t, recv, id, "store.insert_batch", "INSERT webhook_events", "redis enqueue",
		"store.apply_group", "store.claim", "store.lock_accounts", "apply account.updated", "store.commit")
	t.Logf("the delivery's trace:\n%s", testenv.FormatTrace(spans))

	if job.TraceID != server.TraceID || job.ParentSpanID != server.SpanID {
		t.Errorf("job span in trace %s under %s; the delivery's span is %s in %s", job.TraceID, job.ParentSpanID, server.SpanID, server.TraceID)
	}
	if got := strings.Join(server.Events, ", "); got != "signature verified, group commit" {
		t.Errorf("server span events: %s", got)
	}
	for k, want := range map[string]string{"stripe.event_type": "account.updated", "stripe.account": "acct_traced",
		"stripe.livemode": "false", "http.request.method": "POST", "http.response.status_code": "200",
		"http.route": "/api/billing/webhooks/stripe"} {
		if got := server.Attributes[k]; got != want {
			t.Errorf("server span %s = %q, want %q", k, got, want)
		}
	}
	var dbSpans, workerDB int
	for _, s := range spans {
		if s.Attributes["db.system.name"] == "postgresql" {
			dbSpans++
			if s.Service == "stripe-webhooks-worker" {
				workerDB++
			}
		}
		if s.Error != "" {
			t.Errorf("span %s failed: %s", s.Name, s.Error)
		}
	}
	if dbSpans == 0 || workerDB == 0 {
		t.Errorf("%d database spans in the trace, %d of the worker's", dbSpans, workerDB)
	}
	want := "00-" + server.TraceID + "-" + server.SpanID + "-01"
	if tp := storedTraceparent(t, b, id); tp.String != want {
		t.Errorf("stored traceparent %+v, want %s", tp, want)
	}
	for name, logs := range map[string]string{"event stored": ingest.Logs.String(), "event processed": worker.Logs.String()} {
		if ids := logTraceIDs(logs, name, id); len(ids) != 1 || ids[0] != server.TraceID {
			t.Errorf("%q lines of %s carry trace ids %q, want [%s]", name, id, ids, server.TraceID)
		}
	}
}

// A delivery that comes with a traceparent continues that trace: the
// ingest's server span is a child of the caller's span, and the worker's
// job span is in the same trace.
func TestTraceContinuesAnIncomingTraceparent(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	recv := testenv.NewTraceReceiver(t)
	ingest := startIngest(t, b, tracingTo(recv))
	startWorkerProcess(t, b, tracingTo(recv))
	const caller, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	payload := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_incoming"})
	id := testkit.EventID(payload)
	h := http.Header{"Traceparent": {"00-" + caller + "-" + callerSpan + "-01"}}
	if code := postTraced(t, ingest.Base, payload, h); code != http.StatusOK {
		t.Fatalf("delivery answered %d", code)
	}
	server, job, _ := deliveryTrace(t, recv, id)
	if server.TraceID != caller || server.ParentSpanID != callerSpan {
		t.Errorf("server span in trace %s under %s, want %s under %s", server.TraceID, server.ParentSpanID, caller, callerSpan)
	}
	if job.TraceID != caller {
		t.Errorf("job span in trace %s, want %s", job.TraceID, caller)
	}
}

// An event stored while Redis was down is queued by the sweeper once Redis
// is back (empty), from the traceparent stored with it: its job's span
// still joins its delivery's trace, and the sweep's span links to it.
func TestTraceSweptEventJoinsItsDelivery(t *testing.T) {
	t.Parallel()
	b := testkit.NewPrivateBackend(t)
	recv := testenv.NewTraceReceiver(t)
	ingest := startIngest(t, b.Backend, tracingTo(recv))
	startWorkerProcess(t, b.Backend, merge(tracingTo(recv), fastSweep))
	b.RD.Stop()
	payload := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_swept"})
	id := testkit.EventID(payload)
	if code := postTraced(t, ingest.Base, payload, nil); code != http.StatusOK {
		t.Fatalf("delivery with Redis down answered %d", code)
	}
	b.RD.Start()
	server, job, _ := deliveryTrace(t, recv, id)
	if job.TraceID != server.TraceID || job.ParentSpanID != server.SpanID {
		t.Errorf("swept job's span in trace %s under %s; the delivery's span is %s in %s", job.TraceID, job.ParentSpanID, server.SpanID, server.TraceID)
	}
	if !strings.Contains(strings.Join(server.Events, ";"), "not queued") {
		t.Errorf("the delivery's events: %q, want its job not queued", server.Events)
	}
	testenv.Eventually(t, 10*time.Second, "a sweep's span linked to the delivery", func() bool {
		_, ok := recv.Find(func(s testenv.Span) bool {
			if s.Name != "periodic sweeper" {
				return false
			}
			for _, l := range s.Links {
				if l.TraceID == server.TraceID && l.SpanID == server.SpanID {
					return true
				}
			}
			return false
		})
		return ok
	})
}

// With no endpoint set, tracing is off: nothing is sent (not even to the
// default endpoint, localhost:4318, when the test can listen there), no
// log line carries a trace_id, the event row keeps no traceparent and its
// job has no traceparent argument. OTEL_SDK_DISABLED=true with an endpoint
// set sends nothing either.
func TestNoEndpointNoTracing(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	recv := testenv.NewTraceReceiver(t)
	defaults := defaultEndpointReceivers(t)
	quiet := map[string]string{"OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_SERVICE_NAME": "off"}
	off := startIngest(t, b, quiet)
	disabled := startIngest(t, b, merge(quiet, tracingTo(recv), map[string]string{"OTEL_SDK_DISABLED": "true"}))
	a := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_off_a"})
	c := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_off_b"})
	if postTraced(t, off.Base, a, nil) != http.StatusOK || postTraced(t, disabled.Base, c, nil) != http.StatusOK {
		t.Fatal("a delivery was not answered 200")
	}
	for _, args := range queuedArgs(t, b) {
		if _, ok := args["traceparent"]; ok {
			t.Errorf("a job queued with tracing off has a traceparent: %v", args)
		}
	}
	worker := startWorkerProcess(t, b, quiet)
	ids := []string{testkit.EventID(a), testkit.EventID(c)}
	testenv.Eventually(t, 30*time.Second, "both events to be processed", func() bool { return processedIn(t, b, ids) == 2 })
	testenv.Consistently(t, time.Second, "no request reaching a receiver", func() bool {
		n := recv.Requests()
		for _, d := range defaults {
			n += d.Requests()
		}
		return n == 0
	})
	for _, id := range ids {
		if tp := storedTraceparent(t, b, id); tp.Valid {
			t.Errorf("%s stored with traceparent %q while tracing is off", id, tp.String)
		}
	}
	for _, logs := range []string{off.Logs.String(), disabled.Logs.String(), worker.Logs.String()} {
		if strings.Contains(logs, "trace_id") || strings.Contains(logs, "tracing on") {
			t.Errorf("tracing off, yet:\n%s", logs)
		}
	}
}

// defaultEndpointReceivers listen where an OTLP/HTTP exporter sends by
// default (localhost:4318), on each loopback address the test can take.
func defaultEndpointReceivers(t *testing.T) []*testenv.TraceReceiver {
	var out []*testenv.TraceReceiver
	for _, addr := range []string{"127.0.0.1:4318", "[::1]:4318"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("cannot listen on %s (%v): not watched", addr, err)
			continue
		}
		out = append(out, testenv.NewTraceReceiverOn(t, ln))
	}
	return out
}

// queuedArgs are the arguments of the jobs waiting in b's queue.
func queuedArgs(t *testing.T, b *testkit.Backend) []map[string]any {
	t.Helper()
	conn := testkit.DialRedis(t, b.RedisAddr)
	raws, err := redis.ByteSlices(conn.Do("LRANGE", queue.ListKey(b.Namespace), 0, -1))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, raw := range raws {
		var j work.Job
		if err := json.Unmarshal(raw, &j); err != nil {
			t.Fatal(err)
		}
		out = append(out, j.Args)
	}
	if len(out) == 0 {
		t.Fatal("no job queued")
	}
	return out
}
