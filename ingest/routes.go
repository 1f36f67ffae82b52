package main

import (
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"stripe-webhooks/pkg/telemetry"
)

// WebhookPath is where Stripe delivers events.
const WebhookPath = "/api/billing/webhooks/stripe"

// addRoutes maps the whole API. With an allowlist (STRIPE_IP_ALLOWLIST),
// the webhook route first checks the client address; the other routes
// answer anyone. With tracing on (telemetry.Setup), each delivery is a
// server span, opened first.
func addRoutes(r *gin.Engine, d Deps, m *metrics) {
	// One budget per client address for every kind of rejection.
	limiter := newRejectLimiter(d.RejectPerMinute)
	webhook := []gin.HandlerFunc{handleWebhook(d, m, limiter)}
	if d.Allowlist != nil {
		webhook = append([]gin.HandlerFunc{requireAllowedAddress(d.Allowlist, d.Logger, m, limiter)}, webhook...)
	}
	if telemetry.Enabled() {
		webhook = append([]gin.HandlerFunc{traceDelivery()}, webhook...)
	}
	r.POST(WebhookPath, webhook...)
	r.GET("/healthz", handleHealthz())
	r.GET("/readyz", handleReadyz(d))
	r.GET("/health", handleHealth(d))
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})))
}
