// Command worker applies stored Stripe events (the gocraft/work pool), and
// holds the operations commands: migrate, webui.
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
