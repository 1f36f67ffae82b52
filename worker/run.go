package main

import (
	"context"
	"fmt"
	"io"

	"stripe-webhooks/pkg/config"
)

const usage = `usage: worker [command]

commands:
  (none)                        run the worker pool: apply stored events from the process-webhook queue
  webui                         serve the gocraft/work web UI behind a login on WEBUI_ADDR
  migrate [--create-database]   apply every pending migration and exit
                                (--create-database first creates the database if missing)
  replay --event evt_…          apply stored events again, here and now, and print how many;
  replay --since 24h [--type T]   safe while workers run; newer state is never overwritten
  replay --failed [--type T]      (--failed: events that exhausted their retries)
  reconcile [--since 72h] [--account acct_…]
                                list events from Stripe's API (STRIPE_API_KEY), store and queue
                                those never delivered; print accounts, events listed, missing stored, skipped
  payload evt_…                 print the event's stored payload, byte for byte as Stripe delivered it
  resync (--account acct_… | --all)
                                apply accounts' current state from Stripe's API; newer events win

Configuration comes from the environment; see README.md.`

// run dispatches to the command named in args[1].
func run(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) error {
	cmd, rest := "", []string(nil)
	if len(args) > 1 {
		cmd, rest = args[1], args[2:]
	}
	switch cmd {
	case "":
		return runPool(ctx, rest, environ, stdout)
	case "webui":
		return runWebUI(ctx, rest, environ, stdout)
	case "replay":
		return runReplay(ctx, rest, environ, stdout)
	case "resync":
		return runResync(ctx, rest, environ, stdout, stderr)
	case "reconcile":
		return runReconcile(ctx, rest, environ, stdout, stderr)
	case "payload":
		return runPayload(ctx, rest, environ, stdout)
	case "migrate":
		return runMigrate(ctx, rest, environ, stdout)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return &config.UsageError{Msg: fmt.Sprintf("worker: unknown command %q", cmd), Usage: usage}
	}
}
