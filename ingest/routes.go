package main

import (
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// WebhookPath is where Stripe delivers events.
const WebhookPath = "/api/billing/webhooks/stripe"

func addRoutes(r *gin.Engine, d Deps, m *metrics) {
	r.POST(WebhookPath, handleWebhook(d, m, newRejectLimiter(d.RejectPerMinute)))
	r.GET("/healthz", handleHealthz())
	r.GET("/readyz", handleReadyz(d))
	r.GET("/health", handleHealth(d))
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})))
}
