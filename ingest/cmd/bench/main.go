// Command bench measures, in one run on this machine: (a) the ceiling of a
// gin route that only verifies signatures, (b) the database ceiling of
// single-row idempotent inserts, (c) the real ingest, at several
// concurrencies, alone and with one worker applying meanwhile, (d) the
// worker's end-to-end drain of a fixed batch with one and with three
// processes, (e) the latency from a delivery's 200 to its event's
// processing at fixed open-loop rates, and after a burst into an idle
// pool, (f) the Redis commands of an idle worker and the idle CPU of a
// worker and an ingest, and (g) the ingest with tracing off and with every
// delivery traced. It prints tables with the ratios and writes the
// same as JSON under .bench/. README.md beside this file describes each
// row and how the harness is built.
//
//	make bench        (builds bin/ first)
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "serve-ceiling" {
		err = serveCeiling(ctx)
	} else {
		err = run(ctx, os.Args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
