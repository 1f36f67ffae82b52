package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/jackc/pgx/v5"

	"stripe-webhooks/ingest/loadgen"
	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
)

// maxDBConns caps the database ceiling's pool below Postgres's default
// max_connections of 100.
const maxDBConns = 64

const secret = "whsec_bench"

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
}

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

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	bin := fs.String("bin", "bin", "directory holding ingest and worker")
	conc := fs.String("c", "8,32,128", "client concurrencies")
	dur := fs.Duration("duration", 10*time.Second, "length of each measure")
	drainN := fs.Int("drain", 50000, "events in the drain batch")
	out := fs.String("out", ".bench", "folder for the JSON result")
	withWorker := fs.Bool("with-worker", true, "measure the ingest again at each concurrency with one worker running")
	accounts := fs.Int("accounts", 2000, "connected accounts the deliveries of the measures with a worker are spread over")
	latency := fs.String("latency", "2:20s,50:10s", "end-to-end latency: open-loop rate:duration pairs (empty: none)")
	burstN := fs.Int("burst", 3000, "deliveries of the burst into an idle pool (0: none)")
	burstC := fs.Int("burst-c", 32, "clients of the burst")
	idleBefore := fs.Duration("idle-before", 8*time.Second, "idle time before each latency rate and the burst")
	idle := fs.Bool("idle", true, "measure an idle worker's Redis commands and the idle CPU of a worker and an ingest")
	idleWarmup := fs.Duration("idle-warmup", 60*time.Second, "how long the idle worker has had no job when the count starts")
	idleWindow := fs.Duration("idle-window", 30*time.Second, "how long the idle count runs")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	rates, err := parseRates(*latency)
	if err != nil {
		return err
	}
	serverURL := os.Getenv("DATABASE_URL")
	if serverURL == "" {
		serverURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	redisCfg, err := config.LoadWebUI(os.Environ()) // REDIS_* from the environment, with defaults
	if err != nil {
		return err
	}
	workerCfg, err := config.LoadWorker(os.Environ()) // the workers' concurrency, as they will read it
	if err != nil {
		return err
	}
	dbName := fmt.Sprintf("sw_bench_%d", time.Now().UnixNano())
	dbURL, err := createDatabase(ctx, serverURL, dbName)
	if err != nil {
		return err
	}
	defer dropDatabase(serverURL, dbName)
	ns := "sw-bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	rc := redisCfg.Redis
	rc.Namespace = ns
	pool := queue.NewPool(rc, 16)
	defer pool.Close()
	defer clearNamespace(pool, ns)
	st, err := store.Open(dbURL, store.Options{MaxConns: 8})
	if err != nil {
		return err
	}
	defer st.Close()
	reset := func() error {
		clearNamespace(pool, ns)
		return st.DB().Exec("TRUNCATE webhook_events, stripe_connected_accounts, stripe_external_accounts").Error
	}
	env := append(os.Environ(), "DATABASE_URL="+dbURL, "WORK_NAMESPACE="+ns, "STRIPE_WEBHOOK_SECRET="+secret,
		"REDIS_HOST="+rc.Host, "REDIS_PORT="+strconv.Itoa(rc.Port))

	// The idle stack starts first and idles beside the other measures (on
	// a Redis server and a database of its own), so that its pool has had
	// no job for idle-warmup by the end-to-end measures.
	var idleRun *idleStack
	if *idle {
		fmt.Fprintln(os.Stderr, "idle: starting a worker on a private redis-server, and an ingest…")
		if idleRun, err = startIdle(ctx, serverURL, dbName+"_idle", *bin, env, ns+"-idle"); err != nil {
			return fmt.Errorf("idle: %w", err)
		}
		defer idleRun.close()
	}
	res := Result{Started: time.Now().UTC(), Machine: machine(), DurationSec: dur.Seconds(), Accounts: *accounts}
	self, _ := os.Executable()
	for _, f := range strings.Split(*conc, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c <= 0 {
			return fmt.Errorf("-c: %q is not a concurrency", f)
		}
		row := Row{Concurrency: c}
		fmt.Fprintf(os.Stderr, "c=%d: gin ceiling…\n", c)
		row.CeilingGin, _, row.CeilingGinRSS, err = measureServer(ctx, self, []string{"serve-ceiling"}, env, c, *dur)
		if err != nil {
			return fmt.Errorf("gin ceiling: %w", err)
		}
		fmt.Fprintf(os.Stderr, "c=%d: database ceiling…\n", c)
		if err := reset(); err != nil {
			return err
		}
		if row.CeilingDB, err = dbCeiling(ctx, dbURL, c, *dur); err != nil {
			return fmt.Errorf("database ceiling: %w", err)
		}
		fmt.Fprintf(os.Stderr, "c=%d: ingest…\n", c)
		if err := reset(); err != nil {
			return err
		}
		row.Ingest, row.IngestCPU, row.IngestPeakRSS, err = measureServer(ctx, filepath.Join(*bin, "ingest"), nil, env, c, *dur)
		if err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		row.IngestVsGin = row.Ingest.PerSecond / row.CeilingGin.PerSecond
		row.IngestVsDB = row.Ingest.PerSecond / row.CeilingDB.PerSecond
		row.IngestStatuses = fmt.Sprint(row.Ingest.Status)
		if *withWorker {
			fmt.Fprintf(os.Stderr, "c=%d: ingest with a worker…\n", c)
			if err := reset(); err != nil {
				return err
			}
			ww, err := measureWithWorker(ctx, st, pool, ns, *bin, env, c, *dur, *accounts)
			if err != nil {
				return fmt.Errorf("ingest with a worker: %w", err)
			}
			ww.VsAlone = ww.Ingest.PerSecond / row.Ingest.PerSecond
			ww.VsDB = ww.Ingest.PerSecond / row.CeilingDB.PerSecond
			row.WithWorker = &ww
		}
		res.Rows = append(res.Rows, row)
	}
	for _, procs := range []int{1, 3} {
		if *drainN <= 0 {
			break
		}
		fmt.Fprintf(os.Stderr, "drain: %d events, %d worker process(es)…\n", *drainN, procs)
		if err := reset(); err != nil {
			return err
		}
		d, err := drain(ctx, st, pool, ns, filepath.Join(*bin, "worker"), env, procs, workerCfg.Concurrency, *drainN)
		if err != nil {
			return fmt.Errorf("drain: %w", err)
		}
		res.Drain = append(res.Drain, d)
	}
	// The idle count runs over the start of the end-to-end measures (an
	// idle pause and the lowest rate), or alone without them.
	var idleDone chan idleResult
	if idleRun != nil {
		idleDone = make(chan idleResult, 1)
		go func() {
			i, err := idleRun.measure(ctx, *idleWarmup, *idleWindow)
			idleDone <- idleResult{i, err}
		}()
	}
	if len(rates) > 0 || *burstN > 0 {
		if err := reset(); err != nil {
			return err
		}
		if res.Latency, res.Burst, err = endToEnd(ctx, dbURL, *bin, env, rates, *idleBefore, *burstN, *burstC, *accounts); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
	}
	if idleDone != nil {
		r := <-idleDone
		if r.err != nil {
			return fmt.Errorf("idle: %w", r.err)
		}
		res.Idle = &r.i
	}
	printTable(os.Stdout, res)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	path := filepath.Join(*out, "bench-"+res.Started.Format("20060102-150405")+".json")
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwritten to %s\n", path)
	return nil
}

// measureServer starts a server process, loads it with c clients for d,
// and returns the report, the CPU per answered delivery and the process's
// peak RSS.
func measureServer(ctx context.Context, path string, args, env []string, c int, d time.Duration) (loadgen.Report, cpuShare, int64, error) {
	p, err := startProc(ctx, path, args, withEnv(env, "SHUTDOWN_TIMEOUT=5s"), "PORT")
	if err != nil {
		return loadgen.Report{}, cpuShare{}, 0, err
	}
	defer p.stop()
	o := loadgen.Options{URL: p.base + webhookPath, Secret: secret, Concurrency: c, EventType: "account.updated"}
	o.Duration = time.Second // warm up: connections, pools, caches
	if _, err := loadgen.Run(ctx, o); err != nil {
		return loadgen.Report{}, cpuShare{}, 0, err
	}
	o.Duration = d
	mark := markCPU()
	rep, err := loadgen.Run(ctx, o)
	return rep, mark.since(max(rep.Status["200"], 1)), peakRSS(p.pid()), err
}

const webhookPath = "/api/billing/webhooks/stripe"

// proc is a started service binary that answers on base.
type proc struct {
	cmd  *exec.Cmd
	base string
}

// startProc starts a service binary on a free port, named to it by portVar
// (PORT, WORKER_HTTP_PORT), and waits until its /healthz answers.
func startProc(ctx context.Context, path string, args, env []string, portVar string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = withEnv(env, portVar+"="+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = nil, os.Stderr // nil: straight to /dev/null, no copying goroutine here
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	if err := waitHTTP(p.base + "/healthz"); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) stop() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// withEnv is env with vars added (a later entry wins), in a slice of its own.
func withEnv(env []string, vars ...string) []string {
	return append(slices.Clip(env), vars...)
}

// drain seeds n events, starts procs worker processes, and times them until
// every event is processed.
func drain(ctx context.Context, st *store.Store, pool *redis.Pool, ns string, path string, env []string, procs, concurrency, n int) (Drain, error) {
	if err := seed(ctx, st, queue.NewEnqueuer(ns, pool), n); err != nil {
		return Drain{}, err
	}
	var cmds []*exec.Cmd
	cpu := markCPU()
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	began := time.Now()
	for range procs {
		port, err := freePort()
		if err != nil {
			return Drain{}, err
		}
		cmd := exec.CommandContext(ctx, path)
		cmd.Env = append(env, "WORKER_HTTP_PORT="+strconv.Itoa(port))
		cmd.Stdout, cmd.Stderr = nil, os.Stderr // nil: straight to /dev/null, no copying goroutine here
		if err := cmd.Start(); err != nil {
			return Drain{}, err
		}
		cmds = append(cmds, cmd)
	}
	// Poll lightly (the checks cost Postgres and Redis time): does any event
	// wait, does any job?
	deadline := time.Now().Add(5 * time.Minute)
	var processedAt, emptyAt time.Duration
	for processedAt == 0 || emptyAt == 0 {
		if processedAt == 0 {
			var waiting bool
			if err := st.DB().Raw("SELECT EXISTS (SELECT 1 FROM webhook_events WHERE NOT processed)").Scan(&waiting).Error; err != nil {
				return Drain{}, err
			}
			if !waiting {
				processedAt = time.Since(began)
			}
		}
		if emptyAt == 0 {
			jobs, err := queuedJobs(pool, ns)
			if err != nil {
				return Drain{}, err
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
	cpuShare := cpu.since(n)
	var left int64
	if err := st.DB().Raw("SELECT count(*) FROM webhook_events WHERE NOT processed").Scan(&left).Error; err != nil {
		return Drain{}, err
	}
	if processedAt == 0 || emptyAt == 0 {
		processedAt, emptyAt = time.Since(began), time.Since(began)
	}
	d := Drain{Processes: procs, Concurrency: concurrency, Events: n, Seconds: processedAt.Seconds(),
		PerSecond: float64(n-int(left)) / processedAt.Seconds(), QueueEmptySeconds: emptyAt.Seconds(),
		JobsPerSecond: float64(n) / emptyAt.Seconds(), FailedOrStuck: int(left), CPU: cpuShare}
	for _, c := range cmds {
		d.PeakRSSBytes = append(d.PeakRSSBytes, peakRSS(c.Process.Pid))
	}
	return d, nil
}

// seed stores and queues n account.updated events over 2,000 accounts, as
// the ingest would, with group commit and pipelined enqueues.
func seed(ctx context.Context, st *store.Store, enq *queue.Enqueuer, n int) error {
	in, err := st.NewInserter(store.InserterOptions{Batches: 4, MaxBatch: 500, AfterCommit: func(rows []store.Committed) error {
		jobs := make([]queue.Job, len(rows))
		for i, r := range rows {
			jobs[i] = queue.Job{WebhookID: r.WebhookID, EventID: r.StripeEventID, EventType: r.EventType}
		}
		_, err := enq.EnqueueMany(ctx, jobs)
		return err
	}})
	if err != nil {
		return err
	}
	defer in.Close()
	errs := make(chan error, 16)
	for w := range 16 {
		go func() {
			for i := w; i < n; i += 16 {
				p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: fmt.Sprintf("acct_bench_%04d", i%2000)})
				var e struct{ ID, Type string }
				_ = json.Unmarshal(p, &e)
				res, err := in.Insert(ctx, store.NewEvent{StripeEventID: e.ID, EventType: e.Type, Payload: p, ReceivedAt: time.Now()})
				if err == nil {
					err = res.AfterCommitErr
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

func printTable(w io.Writer, r Result) {
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
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
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
	printWithWorker(w, r)
	printLatency(w, r)
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
	if i := r.Idle; i != nil {
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

func waitHTTP(url string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer", url)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func createDatabase(ctx context.Context, serverURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	cfg, _ := pgx.ParseConfig(serverURL)
	url := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	if _, err := store.Migrate(ctx, url, store.MigrateOptions{}); err != nil {
		return "", err
	}
	return url, nil
}

func dropDatabase(serverURL, name string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}
