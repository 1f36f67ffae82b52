package main

import (
	"fmt"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"stripe-webhooks/pkg/config"
)

// WebhookPath is where Stripe delivers events.
const WebhookPath = "/api/billing/webhooks/stripe"

// addRoutes maps the whole API. With STRIPE_IP_ALLOWLIST set, the webhook
// route first checks the client address; the other routes answer anyone.
// A malformed allowlist is an error, and then no route is added.
func addRoutes(r *gin.Engine, d Deps, m *metrics) error {
	parsed, err := config.ParseAllowlist(d.Config.IPAllowlist)
	if err != nil {
		return fmt.Errorf("STRIPE_IP_ALLOWLIST %w", err)
	}
	// One budget per client address for every kind of rejection.
	limiter := newRejectLimiter(d.RejectPerMinute)
	webhook := []gin.HandlerFunc{handleWebhook(d, m, limiter)}
	if parsed.On() {
		list, taken, err := newAllowlist(parsed)
		if err != nil {
			return err
		}
		webhook = append([]gin.HandlerFunc{requireAllowedAddress(list, d.Logger, m, limiter)}, webhook...)
		d.Logger.Info("webhook IP allowlist on", "prefixes", len(list.prefixes), "stripe_list", parsed.Stripe, "stripe_list_taken", taken)
	}
	r.POST(WebhookPath, webhook...)
	r.GET("/healthz", handleHealthz())
	r.GET("/readyz", handleReadyz(d))
	r.GET("/health", handleHealth(d))
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})))
	return nil
}
