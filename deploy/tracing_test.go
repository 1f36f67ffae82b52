package deploy_test

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/telemetry"
	"stripe-webhooks/pkg/testenv"
)

// tracedOverlays include components/tracing; the others trace nothing.
var tracedOverlays = map[string]bool{"production": true, "production-sentinel": true, "production-sso": true}

// components/tracing turns tracing on in the ingest's and the worker's
// containers of the overlays that include it (production and those built on
// it), to an OpenTelemetry Collector Service, with a parent-based ratio
// sampler whose ratio is between 0 and 1, all accepted by the services' own
// checks (telemetry.Check); no other container (migrate, the web UI) and
// no other overlay gets an OTEL_ variable.
func TestTracingComponentSetsTheCollector(t *testing.T) {
	t.Parallel()
	for _, o := range overlays {
		r := render(t, o)
		for _, d := range r.ours() {
			for _, c := range append(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers...) {
				if sidecar(c) {
					continue
				}
				where := o + "/" + d.Name + "/" + c.Name
				env := r.environ(t, c)
				traces := tracedOverlays[o] && (c.Name == "ingest" || c.Name == "worker")
				on, err := telemetry.Check(pairs(env))
				if err != nil || on != traces {
					t.Errorf("%s: tracing on = %v (%v), want %v", where, on, err, traces)
				}
				if !traces {
					for name := range env {
						if strings.HasPrefix(name, "OTEL_") {
							t.Errorf("%s sets %s", where, name)
						}
					}
					continue
				}
				if ep := env["OTEL_EXPORTER_OTLP_ENDPOINT"]; !strings.Contains(ep, "otel-collector") || !strings.HasSuffix(ep, ":4318") {
					t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT = %q, want the collector's OTLP/HTTP port", where, ep)
				}
				ratio, err := strconv.ParseFloat(env["OTEL_TRACES_SAMPLER_ARG"], 64)
				if env["OTEL_TRACES_SAMPLER"] != "parentbased_traceidratio" || err != nil || ratio <= 0 || ratio > 1 {
					t.Errorf("%s: sampler %q %q, want parentbased_traceidratio of a ratio in (0, 1]", where,
						env["OTEL_TRACES_SAMPLER"], env["OTEL_TRACES_SAMPLER_ARG"])
				}
			}
		}
	}
}

// The production ingest, run with its container's environment (the
// collector's address pointed at a receiver in this test), traces: a
// delivery whose traceparent is sampled reaches the receiver as the ingest's
// server span, in the caller's trace, under service.name
// stripe-webhooks-ingest.
func TestTracingComponentAgainstTheRunningIngest(t *testing.T) {
	t.Parallel()
	prod := render(t, "production")
	d := prod.deployment(t, "stripe-webhooks-ingest")
	var ctr corev1.Container
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "ingest" {
			ctr = c
		}
	}
	recv := testenv.NewTraceReceiver(t)
	dbURL, ns := testenv.Database(t, ""), testenv.Namespace(t, "")
	host, redisPort := testenv.RedisHostPort(t, testenv.RedisAddr())
	env, _ := prod.configEnviron(t, "production/ingest", &d.Spec.Template.Spec, ctr,
		map[string]string{"DATABASE_URL": dbURL, "STRIPE_WEBHOOK_SECRET": "whsec_tracing_test", "REDIS_PASSWORD": ""})
	if env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "" {
		t.Fatal("production's ingest has no OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	port := testenv.FreePort(t)
	env["OTEL_EXPORTER_OTLP_ENDPOINT"], env["OTEL_BSP_SCHEDULE_DELAY"] = recv.URL, "50"
	env["PORT"], env["REDIS_HOST"], env["REDIS_PORT"], env["WORK_NAMESPACE"] = strconv.Itoa(port), host, strconv.Itoa(redisPort), ns
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testenv.StartProcess(t, filepath.Join(binDir, "ingest"), nil, pairs(env), base, "/healthz")

	const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
	payload := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
	req, _ := http.NewRequest(http.MethodPost, base+"/api/billing/webhooks/stripe", bytes.NewReader(payload))
	req.Header.Set("Stripe-Signature", stripefixture.Sign(payload, "whsec_tracing_test", time.Now()))
	req.Header.Set("Traceparent", "00-"+caller+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("delivery answered %d", resp.StatusCode)
	}
	testenv.Eventually(t, 15*time.Second, "the delivery's server span at the receiver", func() bool {
		_, ok := recv.Find(func(s testenv.Span) bool {
			return s.Kind == "SPAN_KIND_SERVER" && s.TraceID == caller && s.Service == "stripe-webhooks-ingest"
		})
		return ok
	})
}
