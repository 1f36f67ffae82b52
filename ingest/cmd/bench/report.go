package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one `make bench` run.
type Result struct {
	Started     time.Time `json:"started"`
	Machine     string    `json:"machine"`
	DurationSec float64   `json:"seconds_per_measure"`
	Rows        []Row     `json:"ingest"`
	Drain       []Drain   `json:"drain"`
	// Accounts is how many connected accounts the deliveries of the
	// measures with a worker are spread over.
	Accounts int       `json:"accounts_with_worker"`
	Latency  []Latency `json:"latency"`
	Burst    *Burst    `json:"burst,omitempty"`
	Idle     *Idle     `json:"idle,omitempty"`
	Storage  *Storage  `json:"storage,omitempty"`
	Expiry   *Expiry   `json:"expiry,omitempty"`
	Upgrade  *Upgrade  `json:"upgrade,omitempty"`
	Tracing  *Tracing  `json:"tracing,omitempty"`
}

// writeResult writes r as JSON into the folder out.
func writeResult(out string, r Result) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	path := filepath.Join(out, "bench-"+r.Started.Format("20060102-150405")+".json")
	b, _ := json.MarshalIndent(r, "", "  ")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwritten to %s\n", path)
	return nil
}

// printTable prints every table of r, and the lines that sum it up.
func printTable(w io.Writer, r Result) {
	printIngest(w, r)
	printDrain(w, r)
	printWithWorker(w, r)
	printLatency(w, r)
	printIdle(w, r)
	printStorage(w, r)
	printTracing(w, r.Tracing)
	printEndToEnd(w, r)
	printAt32(w, r)
}

func printIngest(w io.Writer, r Result) {
	size := 0
	if len(r.Rows) > 0 {
		size = r.Rows[0].Ingest.PayloadSize
	}
	fmt.Fprintf(w, "\nmake bench, %s, %s, %.0fs per measure, %d-byte signed account.updated deliveries\n\n",
		r.Started.Format(time.RFC3339), r.Machine, r.DurationSec, size)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\tgin ceiling/s\tdb ceiling/s\tingest/s\tingest p50 ms\tp90 ms\tp99 ms\tmax ms\tingest/gin\tingest/db\tingest peak RSS MiB\tgin peak RSS MiB\t")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.1f\t%.2f\t%.2f\t%.1f\t%.1f\t\n", row.Concurrency,
			row.CeilingGin.PerSecond, row.CeilingDB.PerSecond, row.Ingest.PerSecond,
			row.Ingest.P50Ms, row.Ingest.P90Ms, row.Ingest.P99Ms, row.Ingest.MaxMs,
			row.IngestVsGin, row.IngestVsDB, mib(row.IngestPeakRSS), mib(row.CeilingGinRSS))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\tCPU µs/delivery: load generator\tingest\tpostgres\tredis\tmachine\t")
	for _, row := range r.Rows {
		c := row.IngestCPU
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t\n", row.Concurrency, c.LoadGeneratorUs, c.IngestUs, c.PostgresUs, c.RedisUs, c.MachineUs)
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func printDrain(w io.Writer, r Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "worker processes\tconcurrency each\tevents\tall processed s\tevents/s\tqueue empty s\tjobs/s\tpeak RSS MiB (each)\tunprocessed at end\tCPU µs/event: workers\tpostgres\tredis\tmachine\t")
	for _, d := range r.Drain {
		var rss []string
		for _, b := range d.PeakRSSBytes {
			rss = append(rss, fmt.Sprintf("%.1f", mib(b)))
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.2f\t%.0f\t%.2f\t%.0f\t%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t\n", d.Processes, d.Concurrency, d.Events, d.Seconds, d.PerSecond, d.QueueEmptySeconds, d.JobsPerSecond, strings.Join(rss, " "), d.FailedOrStuck,
			d.CPU.WorkerUs, d.CPU.PostgresUs, d.CPU.RedisUs, d.CPU.MachineUs)
	}
	tw.Flush()
}

func printWithWorker(w io.Writer, r Result) {
	if len(r.Rows) == 0 || r.Rows[0].WithWorker == nil {
		return
	}
	fmt.Fprintf(w, "\ningest with one worker running (deliveries over %d accounts)\n\n", r.Accounts)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\tingest alone/s\twith worker/s\twith/alone\talone/db\twith worker/db\tp50 ms\tp90 ms\tp99 ms\tmax ms\tworker processed/s\tunprocessed at end\tjobs queued at end\tingest peak RSS MiB\tworker peak RSS MiB\t")
	for _, row := range r.Rows {
		ww := row.WithWorker
		if ww == nil {
			continue
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%.0f\t%d\t%d\t%.1f\t%.1f\t\n", row.Concurrency,
			row.Ingest.PerSecond, ww.Ingest.PerSecond, ww.VsAlone, row.IngestVsDB, ww.VsDB,
			ww.Ingest.P50Ms, ww.Ingest.P90Ms, ww.Ingest.P99Ms, ww.Ingest.MaxMs,
			ww.WorkerPerSecond, ww.Unprocessed, ww.QueuedJobs, mib(ww.IngestPeakRSS), mib(ww.WorkerPeakRSS))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\tCPU µs/delivery with worker: load generator\tingest\tworker\tpostgres\tredis\tmachine\t")
	for _, row := range r.Rows {
		if row.WithWorker == nil {
			continue
		}
		c := row.WithWorker.CPU
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t\n", row.Concurrency, c.LoadGeneratorUs, c.IngestUs, c.WorkerUs, c.PostgresUs, c.RedisUs, c.MachineUs)
	}
	tw.Flush()
}

func printLatency(w io.Writer, r Result) {
	if len(r.Latency) > 0 {
		fmt.Fprintf(w, "\nend to end, one ingest and one worker: open loop, 200 → processed_at\n\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "deliveries/s\tdeliveries\tidle before s\tnon-200\tp50 ms\tp90 ms\tp99 ms\tmax ms\tunprocessed\tingest p50 ms\tingest p99 ms\t")
		for _, l := range r.Latency {
			fmt.Fprintf(tw, "%g\t%d\t%.0f\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%.2f\t%.2f\t\n", l.Rate, l.Deliveries, l.IdleSec, l.Non200,
				l.P50Ms, l.P90Ms, l.P99Ms, l.MaxMs, l.Unprocessed, l.Ingest.P50Ms, l.Ingest.P99Ms)
		}
		tw.Flush()
	}
	if b := r.Burst; b != nil {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "burst deliveries\tclients\tidle before s\tnon-200\tfirst request → last 200 s\tstored/s\tingest p99 ms\tprocessed at the last 200\tlast 200 → all processed s\t200 → processed p50 ms\tp99 ms\tmax ms\tunprocessed\t")
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%d\t%.2f\t%.0f\t%.2f\t%d\t%.3f\t%.1f\t%.1f\t%.1f\t%d\t\n", b.Deliveries, b.Clients, b.IdleSec, b.Non200,
			b.StoreSec, b.StoredPerSec, b.IngestP99Ms, b.ProcessedByLastOK, b.LastOKToAllSec, b.P50Ms, b.P99Ms, b.MaxMs, b.Unprocessed)
		tw.Flush()
	}
}

func printIdle(w io.Writer, r Result) {
	i := r.Idle
	if i == nil {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "idle: no job for s\twindow s\tworker's Redis commands/s\tworker CPU % of a core\tingest CPU % of a core\t")
	fmt.Fprintf(tw, "%.0f\t%.0f\t%.2f\t%.3f\t%.3f\t\n", i.NoJobSec, i.WindowSec, i.RedisCommandsPerSec, i.WorkerCPUPercent, i.IngestCPUPercent)
	tw.Flush()
	names := make([]string, 0, len(i.RedisByCommand))
	for n := range i.RedisByCommand {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(i.RedisByCommand[b], i.RedisByCommand[a]), cmp.Compare(a, b))
	})
	var by []string
	for _, n := range names {
		by = append(by, fmt.Sprintf("%s %d", n, i.RedisByCommand[n]))
	}
	fmt.Fprintf(w, "idle worker's commands in %.0fs (%s): %s\n", i.WindowSec, i.WorkerBinary, strings.Join(by, ", "))
}

// printEndToEnd sums the end-to-end measures up beside their targets.
func printEndToEnd(w io.Writer, r Result) {
	var parts []string
	for _, l := range r.Latency {
		parts = append(parts, fmt.Sprintf("at %g/s p50 %.1f ms, p99 %.1f ms", l.Rate, l.P50Ms, l.P99Ms))
	}
	if b := r.Burst; b != nil {
		parts = append(parts, fmt.Sprintf("burst of %d: all processed %.3f s after the last 200", b.Deliveries, b.LastOKToAllSec))
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "\nend to end: %s (targets: p50 < 15 ms, p99 < 50 ms; burst < 1 s)\n", strings.Join(parts, "; "))
	}
}

// printAt32 sums the row of 32 clients up: the ingest against the database
// ceiling and the drain, alone and with a worker.
func printAt32(w io.Writer, r Result) {
	for _, row := range r.Rows {
		if row.Concurrency == 32 && len(r.Drain) == 2 {
			d := r.Drain[1]
			fmt.Fprintf(w, "\nat 32 clients: ingest %.0f/s = %.2f x database ceiling, p99 %.2f ms; drain with 3 workers %.0f events/s = %.2f x ingest (queue empty: %.0f jobs/s = %.2f x ingest)\n",
				row.Ingest.PerSecond, row.IngestVsDB, row.Ingest.P99Ms, d.PerSecond, d.PerSecond/row.Ingest.PerSecond, d.JobsPerSecond, d.JobsPerSecond/row.Ingest.PerSecond)
		}
		if ww := row.WithWorker; row.Concurrency == 32 && ww != nil {
			fmt.Fprintf(w, "at 32 clients with a worker: ingest %.0f/s = %.2f x database ceiling (alone %.2f), p99 %.2f ms; worker %.0f events/s, %d unprocessed at end\n",
				ww.Ingest.PerSecond, ww.VsDB, row.IngestVsDB, ww.Ingest.P99Ms, ww.WorkerPerSecond, ww.Unprocessed)
		}
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// peakRSS reads a live process's peak resident set (VmHWM).
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func machine() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	model := ""
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			break
		}
	}
	return fmt.Sprintf("%d cores (%s)", numCPU(), model)
}

func printStorage(w io.Writer, r Result) {
	if s := r.Storage; s != nil {
		fmt.Fprintf(w, "\nwhat an event costs Postgres: %d account.updated deliveries from %d clients over %d accounts, through bin/ingest and bin/worker\n\n",
			s.Events, s.Clients, s.Accounts)
		t := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(t, "events\tWAL B/event\tdatabase growth B/event\tevent row updates\theap-only\tshare\tpostgres CPU µs/event\tseconds\t")
		fmt.Fprintf(t, "%d\t%.0f\t%.0f\t%d\t%d\t%.2f\t%.0f\t%.1f\t\n", s.Events, s.WALBytes, s.DiskBytes, s.Updates, s.HOTUpdates,
			s.HOTShare, s.PostgresCPU, s.Seconds)
		t.Flush()
		t = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(t, "\ttable\theap B/event\tTOAST B/event\tindexes B/event\tindexes\t")
		slices.SortFunc(s.Relations, func(a, b RelationGrowth) int { return cmp.Compare(a.Table, b.Table) })
		for _, g := range s.Relations {
			fmt.Fprintf(t, "\t%s\t%.0f\t%.0f\t%.0f\t%d\t\n", g.Table, g.Heap, g.TOAST, g.Indexes, g.NIndex)
		}
		t.Flush()
	}
	if e := r.Expiry; e != nil {
		fmt.Fprintf(w, "\nexpiring a day of %d processed events past the retention: %.2f s, %d dead tuples left\n", e.Events, e.Seconds, e.DeadTuples)
	}
	if u := r.Upgrade; u != nil {
		fmt.Fprintf(w, "\nupgrading %d rows to the partitioned table (migration 00011): %.1f s; %d deliveries stored meanwhile, the longest in %.0f ms\n",
			u.Rows, u.Seconds, u.Delivered, u.LongestMs)
	}
}
