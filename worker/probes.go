package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"stripe-webhooks/pkg/health"
	"stripe-webhooks/pkg/store"
)

// probeServer serves the worker's probes and metrics on WORKER_HTTP_PORT.
func probeServer(st *store.Store, pool *redis.Pool, reg *prometheus.Registry, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           workerRoutes(st, pool, reg),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// workerRoutes serves /healthz, /readyz and /metrics.
func workerRoutes(st *store.Store, pool *redis.Pool, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	// Ready only with both backends: a worker can do nothing without either.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rep := map[string]string{"status": "ready", "database": "up", "redis": "up"}
		status := http.StatusOK
		redisErr := make(chan error, 1) // both at once: at most one deadline in all
		go func() { redisErr <- health.Redis(r.Context(), pool) }()
		if err := health.Postgres(r.Context(), st); err != nil {
			rep["database"], rep["status"], status = "down", "not ready", http.StatusServiceUnavailable
		}
		if err := <-redisErr; err != nil {
			rep["redis"], rep["status"], status = "down", "not ready", http.StatusServiceUnavailable
		}
		writeJSON(w, status, rep)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
