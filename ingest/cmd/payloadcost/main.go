// Command payloadcost measures what a delivery's payload costs stored in
// each of four forms, for the same deliveries: (a) jsonb and (b) json,
// both compressed by Postgres (lz4 where the server has it), and bytea
// holding the raw body compressed by the application with zstd (c)
// without and (d) with pkg/payload's dictionary. Each form gets a table of
// its own in a database of its own, filled as the ingest fills
// webhook_events (one INSERT … SELECT FROM unnest per 128 deliveries, each
// its own transaction), and is read back whole.
//
// It reports per event: the bytes the table takes after VACUUM (heap and
// TOAST), the WAL its inserts wrote, the CPU of the Postgres backend to
// insert and to read them back, the Go CPU to encode (the ingest's share)
// and to decode (the worker's), and the WAL of then marking every row
// processed (an UPDATE copies a payload stored in the row, not one in
// TOAST). Three corpora pass through each
// form: the bench's deliveries (account.updated, as ingest/loadgen sends
// them over -accounts accounts), the same with every value randomised
// (corpus.Vary: the dictionary then knows only keys and layout), and
// those indented with two spaces as Stripe sends JSON. A last table
// weighs zstd's levels.
//
//	go run ./ingest/cmd/payloadcost [-n 20000] [-accounts 2000]
//
// DATABASE_URL names the Postgres server (its maintenance database) as for
// the bench; it must run on this machine, whose /proc shows its backends'
// CPU.
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
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "payloadcost:", err)
		os.Exit(1)
	}
}
