package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

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
	Logger *slog.Logger
	Config config.Ingest
	Store  *store.Store
	// Inserter stores deliveries with group commit.
	Inserter *store.Inserter
	Redis    *redis.Pool
	Metrics  *metrics
	Verifier *stripeevent.Verifier
	// Allowlist, if set, holds the client addresses the webhook route
	// accepts (STRIPE_IP_ALLOWLIST); others get 403.
	Allowlist *allowlist
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
	addRoutes(r, d, d.Metrics)
	return r, nil
}

// queueCommitted queues a job for each new event of a committed batch, and
// for each duplicate not yet processed (gocraft/work merges it with a copy
// still waiting), in one round trip to Redis. It waits for Redis at most
// timeout: the batch's rows are committed, so a Redis that is slow, hung or
// cut off delays their answers by no more than that, and the sweeper queues
// them later. Each job carries the traceparent stored with its event.
func queueCommitted(q *queue.Enqueuer, m *metrics, timeout time.Duration) store.AfterCommit {
	return func(ctx context.Context, rows []store.Committed) error {
		jobs := make([]queue.Job, 0, len(rows))
		seen := make(map[string]bool, len(rows))
		for _, r := range rows {
			if (r.Inserted || !r.Processed) && !seen[r.WebhookID] {
				seen[r.WebhookID] = true
				jobs = append(jobs, queue.Job{WebhookID: r.WebhookID, EventID: r.StripeEventID, EventType: r.EventType,
					Traceparent: r.Traceparent})
			}
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		began := time.Now()
		_, err := q.EnqueueMany(ctx, jobs)
		m.enqueueSeconds.Observe(time.Since(began).Seconds())
		return err
	}
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
