// Command loadgen drives a load at the ingest: N concurrent keep-alive
// clients back to back (closed loop), or deliveries at a fixed rate on up to
// N connections (open loop, -rate), each request a realistic event from
// Stripe's example objects with a unique id and a fresh signature, and an
// optional share of duplicates. It reports throughput, status counts and
// latency percentiles.
//
//	go run ./ingest/cmd/loadgen -c 8 -duration 10s
//	go run ./ingest/cmd/loadgen -rate 50 -c 64 -duration 10s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"stripe-webhooks/ingest/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	port := getenv("PORT")
	if port == "" {
		port = "8080"
	}
	var o loadgen.Options
	fs.StringVar(&o.URL, "url", "http://127.0.0.1:"+port+"/api/billing/webhooks/stripe", "the webhook route")
	fs.IntVar(&o.Concurrency, "c", 8, "concurrent clients (with -rate: the most deliveries in flight)")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop: deliveries per second, latency counted from when each was due (0: closed loop)")
	fs.IntVar(&o.Accounts, "accounts", 0, "spread the events over this many connected accounts (0: the fixture's one)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long to run (ignored when -n is set)")
	fs.IntVar(&o.Requests, "n", 0, "stop after this many requests")
	fs.Float64Var(&o.Duplicates, "dup", 0, "share of requests that repeat an event already sent (0 to 1)")
	fs.StringVar(&o.EventType, "event", "account.updated", "event type")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	secret, _, _ := strings.Cut(getenv("STRIPE_WEBHOOK_SECRET"), ",")
	o.Secret = strings.TrimSpace(secret)
	if o.Secret == "" {
		return fmt.Errorf("STRIPE_WEBHOOK_SECRET is not set: it must be the secret the ingest runs with")
	}
	rep, err := loadgen.Run(ctx, o)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprint(stdout, rep.String())
	return nil
}
