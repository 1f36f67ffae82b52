package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/gin-gonic/gin"
	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripeevent"
)

func init() {
	gin.SetMode(gin.ReleaseMode)
}

// Deps are everything the HTTP server uses.
type Deps struct {
	Logger   *slog.Logger
	Config   config.Ingest
	Store    *store.Store
	Redis    *redis.Pool
	Enqueuer *queue.Enqueuer
	Verifier *stripeevent.Verifier
	// RejectPerMinute limits requests failing verification per client address; 0 is no limit.
	RejectPerMinute int
}

// NewServer returns the ingest's whole HTTP API.
func NewServer(d Deps) (http.Handler, error) {
	r := gin.New()
	if err := r.SetTrustedProxies(d.Config.TrustedProxies); err != nil {
		return nil, fmt.Errorf("ingest: TRUSTED_PROXIES: %w", err)
	}
	r.HandleMethodNotAllowed = true
	r.Use(recovery(d.Logger))
	m := newMetrics(d.Store, d.Redis)
	addRoutes(r, d, m)
	return r, nil
}

// recovery turns a panic into a 500 and one log line; unlike gin's own, it
// never prints the request's headers (they carry the signature).
func recovery(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if p := recover(); p != nil {
				logger.Error("panic serving request", "path", c.FullPath(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
			}
		}()
		c.Next()
	}
}
