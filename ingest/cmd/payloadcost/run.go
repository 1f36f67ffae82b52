package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
)

// options are the command's flags.
type options struct {
	n, accounts int
	levels      bool
	storage     string
	serverURL   string
}

func parseOptions(args []string, getenv func(string) string) (options, error) {
	var o options
	fs := flag.NewFlagSet("payloadcost", flag.ContinueOnError)
	fs.IntVar(&o.n, "n", 20000, "deliveries per corpus")
	fs.IntVar(&o.accounts, "accounts", 2000, "connected accounts the bench's deliveries are spread over")
	fs.BoolVar(&o.levels, "levels", true, "also weigh zstd's levels (Go CPU and size only)")
	fs.StringVar(&o.storage, "storage", "external", "STORAGE of the bytea columns: external or main")
	if err := fs.Parse(args[1:]); err != nil {
		return o, err
	}
	if o.n <= 0 || o.accounts <= 0 {
		return o, errors.New("-n and -accounts must be positive")
	}
	if o.storage != "external" && o.storage != "main" {
		return o, fmt.Errorf("-storage: %q is neither external nor main", o.storage)
	}
	o.serverURL = cmp.Or(getenv("DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	return o, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, getenv)
	if err != nil {
		return err
	}
	corpora, err := buildCorpora(o.n, o.accounts)
	if err != nil {
		return err
	}
	srv, err := inspectServer(ctx, o.serverURL)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d deliveries per corpus; %s\n\n", o.n, srv)
	forms := newForms(srv.lz4, o.storage)
	var results []result
	for _, c := range corpora {
		for _, f := range forms {
			fmt.Fprintf(stderr, "measuring %s / %s\n", c.name, f.name)
			r, err := measure(ctx, o.serverURL, c, f)
			if err != nil {
				return fmt.Errorf("%s / %s: %w", c.name, f.name, err)
			}
			results = append(results, r)
		}
	}
	printResults(stdout, results)
	if o.levels {
		rows, err := weighLevels(corpora)
		if err != nil {
			return err
		}
		printLevels(stdout, rows)
	}
	return nil
}
