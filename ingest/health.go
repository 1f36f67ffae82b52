package main

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"stripe-webhooks/pkg/health"
)

// unprocessedDegraded is the backlog past which /health says degraded.
const unprocessedDegraded = 1000

func handleHealthz() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"status": "ok"})
	}
}

// handleReadyz is ready while Postgres answers: with Redis down the ingest
// still stores every delivery, and the sweeper queues them later.
func handleReadyz(d Deps) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := health.Postgres(c.Request.Context(), d.Store); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not ready", "database": "down"})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready", "database": "up"})
	}
}

type healthReport struct {
	Status      string `json:"status"`
	Database    string `json:"database"`
	Redis       string `json:"redis"`
	Unprocessed int64  `json:"unprocessed"`
}

// handleHealth reports both backends and the backlog: ok, degraded (Redis
// down or over 1000 unprocessed events) or down (Postgres down, 503).
func handleHealth(d Deps) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), health.Timeout)
		defer cancel()
		rep := healthReport{Status: "ok", Database: "up", Redis: "up"}
		redisErr := make(chan error, 1)
		go func() { redisErr <- health.Redis(ctx, d.Redis) }()
		n, err := d.Store.CountUnprocessed(ctx)
		if err != nil {
			rep.Database = "down"
		}
		rep.Unprocessed = n
		if <-redisErr != nil {
			rep.Redis = "down"
		}
		status := http.StatusOK
		switch {
		case rep.Database == "down":
			rep.Status = "down"
			status = http.StatusServiceUnavailable
		case rep.Redis == "down" || rep.Unprocessed > unprocessedDegraded:
			rep.Status = "degraded"
		}
		c.JSON(status, rep)
	}
}
