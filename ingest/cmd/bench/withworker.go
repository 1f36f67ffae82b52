package main

import (
	"context"
	"path/filepath"
	"time"

	"stripe-webhooks/ingest/loadgen"
)

// WithWorker is the ingest measured as deployed: one worker process
// applying what it stores while it is loaded.
type WithWorker struct {
	Ingest loadgen.Report `json:"ingest"`
	// VsAlone and VsDB are the ingest's throughput over the ingest alone
	// and over the database ceiling at the same concurrency.
	VsAlone float64 `json:"over_ingest_alone"`
	VsDB    float64 `json:"over_ceiling_db"`
	// WorkerPerSecond is the events the worker processed during the
	// measure, per second.
	WorkerPerSecond float64 `json:"worker_processed_per_second"`
	// Unprocessed and QueuedJobs are what the worker had not caught up
	// with when the load stopped.
	Unprocessed   int      `json:"unprocessed_at_end"`
	QueuedJobs    int      `json:"jobs_queued_at_end"`
	IngestPeakRSS int64    `json:"ingest_peak_rss_bytes"`
	WorkerPeakRSS int64    `json:"worker_peak_rss_bytes"`
	CPU           cpuShare `json:"cpu"`
}

// measureWithWorker starts one bin/worker and bin/ingest, loads the ingest
// with c clients for d after a second's warm-up, as measureServer does, and
// counts the events the worker processed meanwhile.
func measureWithWorker(ctx context.Context, h *harness, bin string, c int, d time.Duration, accounts int) (WithWorker, error) {
	w, err := startService(ctx, filepath.Join(bin, "worker"), nil, h.env, "WORKER_HTTP_PORT")
	if err != nil {
		return WithWorker{}, err
	}
	defer w.Stop()
	in, err := startService(ctx, filepath.Join(bin, "ingest"), nil, withEnv(h.env, "SHUTDOWN_TIMEOUT=5s"), "PORT")
	if err != nil {
		return WithWorker{}, err
	}
	defer in.Stop()
	o := loadgen.Options{URL: in.Base + webhookPath, Secret: secret, Concurrency: c, EventType: "account.updated", Accounts: accounts}
	o.Duration = time.Second
	if _, err := loadgen.Run(ctx, o); err != nil {
		return WithWorker{}, err
	}
	before, err := h.processed(ctx)
	if err != nil {
		return WithWorker{}, err
	}
	o.Duration = d
	mark := markCPU()
	rep, err := loadgen.Run(ctx, o)
	if err != nil {
		return WithWorker{}, err
	}
	cpu := mark.since(max(rep.Status["200"], 1))
	after, err := h.processed(ctx)
	if err != nil {
		return WithWorker{}, err
	}
	left, err := h.unprocessed(ctx)
	if err != nil {
		return WithWorker{}, err
	}
	jobs, err := queuedJobs(h.pool, h.ns)
	if err != nil {
		return WithWorker{}, err
	}
	return WithWorker{Ingest: rep, WorkerPerSecond: float64(after-before) / rep.Seconds, Unprocessed: left, QueuedJobs: jobs,
		IngestPeakRSS: peakRSS(in.Pid()), WorkerPeakRSS: peakRSS(w.Pid()), CPU: cpu}, nil
}
