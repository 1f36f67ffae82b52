package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/testenv"
)

// Drain is the worker's end-to-end drain of a fixed batch.
type Drain struct {
	Processes   int `json:"processes"`
	Concurrency int `json:"concurrency_per_process"`
	Events      int `json:"events"`
	// Seconds is when every event was processed; PerSecond follows from it.
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	// QueueEmptySeconds is when the last job left the queue: the jobs of
	// events a group applied ahead of them still run, and find them done.
	QueueEmptySeconds float64  `json:"queue_empty_seconds"`
	JobsPerSecond     float64  `json:"jobs_per_second"`
	PeakRSSBytes      []int64  `json:"peak_rss_bytes"`
	FailedOrStuck     int      `json:"unprocessed_at_end"`
	CPU               cpuShare `json:"cpu"`
}

// measureDrains drains the batch with one and with three worker processes.
func measureDrains(ctx context.Context, h *harness, o options) ([]Drain, error) {
	var drains []Drain
	for _, procs := range []int{1, 3} {
		if o.drainN <= 0 {
			break
		}
		fmt.Fprintf(os.Stderr, "drain: %d events, %d worker process(es)…\n", o.drainN, procs)
		if err := h.reset(ctx); err != nil {
			return nil, err
		}
		d, err := drain(ctx, h, filepath.Join(o.bin, "worker"), procs, o.drainN)
		if err != nil {
			return nil, fmt.Errorf("drain: %w", err)
		}
		drains = append(drains, d)
	}
	return drains, nil
}

// drain seeds n events, starts procs worker processes, and times them until
// every event is processed.
func drain(ctx context.Context, h *harness, path string, procs, n int) (Drain, error) {
	if err := seed(ctx, h.st, queue.NewEnqueuer(h.ns, h.pool), n); err != nil {
		return Drain{}, err
	}
	var workers []*testenv.Process
	cpu := markCPU()
	defer func() {
		for _, w := range workers {
			w.Stop()
		}
	}()
	began := time.Now()
	for range procs {
		port, err := testenv.PickPort()
		if err != nil {
			return Drain{}, err
		}
		// Not waiting for /healthz: the workers start together.
		w, err := testenv.Launch(ctx, path, testenv.ProcessOptions{Env: withEnv(h.env, "WORKER_HTTP_PORT="+strconv.Itoa(port)), Stderr: os.Stderr})
		if err != nil {
			return Drain{}, err
		}
		workers = append(workers, w)
	}
	processedAt, emptyAt, err := waitDrained(ctx, h, began)
	if err != nil {
		return Drain{}, err
	}
	cpuShare := cpu.since(n)
	left, err := h.unprocessed(ctx)
	if err != nil {
		return Drain{}, err
	}
	d := Drain{Processes: procs, Concurrency: h.concurrency, Events: n, Seconds: processedAt.Seconds(),
		PerSecond: float64(n-left) / processedAt.Seconds(), QueueEmptySeconds: emptyAt.Seconds(),
		JobsPerSecond: float64(n) / emptyAt.Seconds(), FailedOrStuck: left, CPU: cpuShare}
	for _, w := range workers {
		d.PeakRSSBytes = append(d.PeakRSSBytes, peakRSS(w.Pid()))
	}
	return d, nil
}

// waitDrained polls, lightly (the checks cost Postgres and Redis time),
// until no event waits and no job does, for at most five minutes, and
// returns when each became true (both the time waited, if never).
func waitDrained(ctx context.Context, h *harness, began time.Time) (processedAt, emptyAt time.Duration, err error) {
	deadline := time.Now().Add(5 * time.Minute)
	for processedAt == 0 || emptyAt == 0 {
		if processedAt == 0 {
			waiting, err := h.anyUnprocessed(ctx)
			if err != nil {
				return 0, 0, err
			}
			if !waiting {
				processedAt = time.Since(began)
			}
		}
		if emptyAt == 0 {
			jobs, err := queuedJobs(h.pool, h.ns)
			if err != nil {
				return 0, 0, err
			}
			if jobs == 0 {
				emptyAt = time.Since(began)
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if processedAt == 0 || emptyAt == 0 {
		processedAt, emptyAt = time.Since(began), time.Since(began)
	}
	return processedAt, emptyAt, nil
}
