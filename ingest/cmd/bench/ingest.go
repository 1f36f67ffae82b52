package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"stripe-webhooks/ingest/loadgen"
)

// maxDBConns caps the database ceiling's pool below Postgres's default
// max_connections of 100.
const maxDBConns = 64

// Row is one concurrency's three measures and their ratios.
type Row struct {
	Concurrency    int            `json:"concurrency"`
	CeilingGin     loadgen.Report `json:"ceiling_gin"`
	CeilingDB      loadgen.Report `json:"ceiling_db"`
	Ingest         loadgen.Report `json:"ingest"`
	IngestVsGin    float64        `json:"ingest_over_ceiling_gin"`
	IngestVsDB     float64        `json:"ingest_over_ceiling_db"`
	CeilingGinRSS  int64          `json:"ceiling_gin_peak_rss_bytes"`
	IngestPeakRSS  int64          `json:"ingest_peak_rss_bytes"`
	IngestStatuses string         `json:"ingest_statuses"`
	IngestCPU      cpuShare       `json:"ingest_cpu"`
	// WithWorker is the ingest again, with one worker applying meanwhile.
	WithWorker *WithWorker `json:"ingest_with_worker,omitempty"`
}

// measureRows measures each concurrency's row.
func measureRows(ctx context.Context, h *harness, o options) ([]Row, error) {
	var rows []Row
	for _, c := range o.concurrencies {
		row, err := measureRow(ctx, h, o, c)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// measureRow measures, at c clients, the gin ceiling, the database
// ceiling, the ingest alone and, unless turned off, the ingest with a worker.
func measureRow(ctx context.Context, h *harness, o options, c int) (Row, error) {
	row := Row{Concurrency: c}
	self, _ := os.Executable()
	var err error
	fmt.Fprintf(os.Stderr, "c=%d: gin ceiling…\n", c)
	row.CeilingGin, _, row.CeilingGinRSS, err = measureServer(ctx, self, []string{"serve-ceiling"}, h.env, c, o.dur)
	if err != nil {
		return row, fmt.Errorf("gin ceiling: %w", err)
	}
	fmt.Fprintf(os.Stderr, "c=%d: database ceiling…\n", c)
	if err := h.reset(ctx); err != nil {
		return row, err
	}
	if row.CeilingDB, err = dbCeiling(ctx, h.dbURL, c, o.dur); err != nil {
		return row, fmt.Errorf("database ceiling: %w", err)
	}
	fmt.Fprintf(os.Stderr, "c=%d: ingest…\n", c)
	if err := h.reset(ctx); err != nil {
		return row, err
	}
	row.Ingest, row.IngestCPU, row.IngestPeakRSS, err = measureServer(ctx, filepath.Join(o.bin, "ingest"), nil, h.env, c, o.dur)
	if err != nil {
		return row, fmt.Errorf("ingest: %w", err)
	}
	row.IngestVsGin = row.Ingest.PerSecond / row.CeilingGin.PerSecond
	row.IngestVsDB = row.Ingest.PerSecond / row.CeilingDB.PerSecond
	row.IngestStatuses = fmt.Sprint(row.Ingest.Status)
	if !o.withWorker {
		return row, nil
	}
	fmt.Fprintf(os.Stderr, "c=%d: ingest with a worker…\n", c)
	if err := h.reset(ctx); err != nil {
		return row, err
	}
	ww, err := measureWithWorker(ctx, h, o.bin, c, o.dur, o.accounts)
	if err != nil {
		return row, fmt.Errorf("ingest with a worker: %w", err)
	}
	ww.VsAlone = ww.Ingest.PerSecond / row.Ingest.PerSecond
	ww.VsDB = ww.Ingest.PerSecond / row.CeilingDB.PerSecond
	row.WithWorker = &ww
	return row, nil
}

// measureServer starts a server process, loads it with c clients for d,
// and returns the report, the CPU per answered delivery and the process's
// peak RSS.
func measureServer(ctx context.Context, path string, args, env []string, c int, d time.Duration) (loadgen.Report, cpuShare, int64, error) {
	p, err := startService(ctx, path, args, withEnv(env, "SHUTDOWN_TIMEOUT=5s"), "PORT")
	if err != nil {
		return loadgen.Report{}, cpuShare{}, 0, err
	}
	defer p.Stop()
	o := loadgen.Options{URL: p.Base + webhookPath, Secret: secret, Concurrency: c, EventType: "account.updated"}
	o.Duration = time.Second // warm up: connections, pools, caches
	if _, err := loadgen.Run(ctx, o); err != nil {
		return loadgen.Report{}, cpuShare{}, 0, err
	}
	o.Duration = d
	mark := markCPU()
	rep, err := loadgen.Run(ctx, o)
	return rep, mark.since(max(rep.Status["200"], 1)), peakRSS(p.Pid()), err
}
