// Command worker applies stored Stripe events (the gocraft/work pool, its
// default command) and holds the operations commands: webui (the job UI and
// the console behind a login), migrate, replay, payload, reconcile and resync. Its
// main package holds the entry point, the command dispatch (run.go) and the
// wiring of the capability packages:
//
//	jobs         the pool's jobs: processor, retry policy, waker, metrics
//	maintenance  sweeper, retention, once-per-period runs, dead-set trimming
//	reconcile    reconcile and resync from Stripe's API, their progress
//	replay       applying stored events again (CLI and console)
//	console      the console's pages of events and accounts
//	webui        the web UI's login and the job UI's proxy
//	handler      one file per event type, registry.go maps types to handlers
package main

import (
	"context"
	"os"
	"runtime/debug"

	"stripe-webhooks/pkg/config"
)

// defaultGCPercent is the collector's GOGC unless the environment sets one.
// The worker's live heap is a few MiB while it allocates a copy of every
// event it applies; at Go's default of 100 it collected so often that a
// backlog drained 8-10 % slower, for 3-4 MiB less peak memory.
const defaultGCPercent = 200

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	err := run(context.Background(), os.Args, os.Environ(), os.Stdout, os.Stderr)
	os.Exit(config.ExitCode(err, os.Stderr))
}
