package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

const secret = "whsec_bench"

// options are the bench's flags.
type options struct {
	bin           string
	concurrencies []int
	dur           time.Duration
	drainN        int
	out           string
	withWorker    bool
	accounts      int
	rates         []rate
	burstN        int
	burstC        int
	idleBefore    time.Duration
	idle          bool
	idleWarmup    time.Duration
	idleWindow    time.Duration
	storageN      int
	storageC      int
	expireN       int
	upgradeN      int
	// tracingC is the clients of the tracing row (0: none), measured in
	// tracingRounds alternating rounds; tracingBaseline, if set, holds an
	// ingest built before tracing existed, measured in each round too.
	tracingC        int
	tracingRounds   int
	tracingBaseline string
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&o.bin, "bin", "bin", "directory holding ingest and worker")
	conc := fs.String("c", "8,32,128", "client concurrencies")
	fs.DurationVar(&o.dur, "duration", 10*time.Second, "length of each measure")
	fs.IntVar(&o.drainN, "drain", 50000, "events in the drain batch")
	fs.StringVar(&o.out, "out", ".bench", "folder for the JSON result")
	fs.BoolVar(&o.withWorker, "with-worker", true, "measure the ingest again at each concurrency with one worker running")
	fs.IntVar(&o.accounts, "accounts", 2000, "connected accounts the deliveries of the measures with a worker are spread over")
	latency := fs.String("latency", "2:20s,50:10s", "end-to-end latency: open-loop rate:duration pairs (empty: none)")
	fs.IntVar(&o.burstN, "burst", 3000, "deliveries of the burst into an idle pool (0: none)")
	fs.IntVar(&o.burstC, "burst-c", 32, "clients of the burst")
	fs.DurationVar(&o.idleBefore, "idle-before", 8*time.Second, "idle time before each latency rate and the burst")
	fs.BoolVar(&o.idle, "idle", true, "measure an idle worker's Redis commands and the idle CPU of a worker and an ingest")
	fs.DurationVar(&o.idleWarmup, "idle-warmup", 60*time.Second, "how long the idle worker has had no job when the count starts")
	fs.DurationVar(&o.idleWindow, "idle-window", 30*time.Second, "how long the idle count runs")
	fs.IntVar(&o.storageN, "storage", 20000, "deliveries of the storage measure: what an event costs Postgres (0: none)")
	fs.IntVar(&o.storageC, "storage-c", 16, "clients of the storage measure")
	fs.IntVar(&o.expireN, "expire", 1000000, "events of the day retention expires in the expiry measure (0: none)")
	fs.IntVar(&o.upgradeN, "upgrade", 0, "rows of webhook_events the upgrade to the partitioned table moves in the upgrade measure (0: none)")
	fs.IntVar(&o.tracingC, "tracing-c", 32, "clients of the tracing row: the ingest with tracing off and with every delivery traced (0: none)")
	fs.IntVar(&o.tracingRounds, "tracing-rounds", 2, "alternating rounds of the tracing row's measures")
	fs.StringVar(&o.tracingBaseline, "tracing-baseline", "", "directory of an ingest built before tracing existed, measured beside tracing off (empty: none)")
	if err := fs.Parse(args[1:]); err != nil {
		return o, err
	}
	var err error
	if o.rates, err = parseRates(*latency); err != nil {
		return o, err
	}
	for _, f := range strings.Split(*conc, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c <= 0 {
			return o, fmt.Errorf("-c: %q is not a concurrency", f)
		}
		o.concurrencies = append(o.concurrencies, c)
	}
	return o, nil
}

func run(ctx context.Context, args []string) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	h, err := newHarness(ctx)
	if err != nil {
		return err
	}
	defer h.close()

	// The idle stack starts first and idles beside the other measures (on
	// a Redis server and a database of its own), so that its pool has had
	// no job for idle-warmup by the end-to-end measures.
	var idleRun *idleStack
	if o.idle {
		fmt.Fprintln(os.Stderr, "idle: starting a worker on a private redis-server, and an ingest…")
		if idleRun, err = startIdle(ctx, h.serverURL, o.bin, h.env, h.ns+"-idle"); err != nil {
			return fmt.Errorf("idle: %w", err)
		}
		defer idleRun.close()
	}
	res := Result{Started: time.Now().UTC(), Machine: machine(), DurationSec: o.dur.Seconds(), Accounts: o.accounts}
	if res.Rows, err = measureRows(ctx, h, o); err != nil {
		return err
	}
	if res.Drain, err = measureDrains(ctx, h, o); err != nil {
		return err
	}
	if res.Tracing, err = measureTracing(ctx, h, o); err != nil {
		return err
	}
	if err := measureEndToEnd(ctx, h, o, idleRun, &res); err != nil {
		return err
	}
	if err := measurePostgres(ctx, h, o, &res); err != nil {
		return err
	}
	printTable(os.Stdout, res)
	return writeResult(o.out, res)
}

// measureEndToEnd runs the end-to-end latency and burst measures, and the
// idle count over their start (an idle pause and the lowest rate), or
// alone without them.
func measureEndToEnd(ctx context.Context, h *harness, o options, idleRun *idleStack, res *Result) error {
	var idleDone chan idleResult
	if idleRun != nil {
		idleDone = make(chan idleResult, 1)
		go func() {
			i, err := idleRun.measure(ctx, o.idleWarmup, o.idleWindow)
			idleDone <- idleResult{i, err}
		}()
	}
	if len(o.rates) > 0 || o.burstN > 0 {
		if err := h.reset(ctx); err != nil {
			return err
		}
		var err error
		if res.Latency, res.Burst, err = endToEnd(ctx, h, o); err != nil {
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
	return nil
}

// measurePostgres runs the storage, expiry and upgrade measures, each on a
// database of its own.
func measurePostgres(ctx context.Context, h *harness, o options, res *Result) error {
	if o.storageN > 0 {
		fmt.Fprintf(os.Stderr, "storage: %d deliveries from %d clients over %d accounts…\n", o.storageN, o.storageC, o.accounts)
		s, err := measureStorage(ctx, h, o.bin, o.storageN, o.storageC, o.accounts)
		if err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		res.Storage = &s
	}
	if o.expireN > 0 {
		e, err := measureExpiry(ctx, h, o.expireN)
		if err != nil {
			return fmt.Errorf("expiry: %w", err)
		}
		res.Expiry = &e
	}
	if o.upgradeN > 0 {
		u, err := measureUpgrade(ctx, h, o.upgradeN)
		if err != nil {
			return fmt.Errorf("upgrade: %w", err)
		}
		res.Upgrade = &u
	}
	return nil
}
