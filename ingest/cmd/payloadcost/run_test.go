package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"stripe-webhooks/pkg/testenv"
)

func TestEveryFormStoresTheSameDeliveriesAndCompressedOnesTakeLess(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	corpora, err := buildCorpora(300, 10)
	if err != nil {
		t.Fatal(err)
	}
	var results []result // newForms' order: jsonb, json, bytea zstd, bytea zstd+dict
	for _, f := range newForms(true, "external") {
		r, err := measure(ctx, testenv.ServerURL(), corpora[0], f)
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		if r.events != 300 || r.heap+r.toast <= 0 || r.wal <= 0 || r.walMark <= 0 || r.readBytes <= 0 {
			t.Errorf("%s: %+v; want every row stored, read back and marked", f.name, r)
		}
		// jsonb reformats the body (spacing, key order); the others keep it.
		if want := !strings.HasPrefix(f.name, "jsonb"); r.exact != want {
			t.Errorf("%s: read back byte for byte %v, want %v", f.name, r.exact, want)
		}
		results = append(results, r)
	}
	jsonb, dict := results[0], results[3]
	if dict.heap+dict.toast >= (jsonb.heap+jsonb.toast)/4 || dict.wal >= jsonb.wal/4 {
		t.Errorf("zstd+dict takes %.0f B and %.0f B of WAL per event, jsonb %.0f B and %.0f B; want under a quarter",
			dict.heap+dict.toast, dict.wal, jsonb.heap+jsonb.toast, jsonb.wal)
	}
	if dict.encode <= 0 || dict.decode <= 0 || dict.toast != 0 {
		t.Errorf("zstd+dict: encode %.1f µs, decode %.1f µs, TOAST %.0f B; want CPU counted and the payload in the row", dict.encode, dict.decode, dict.toast)
	}
}

func TestRunPrintsBothTables(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	getenv := func(k string) string {
		if k == "DATABASE_URL" {
			return testenv.ServerURL()
		}
		return ""
	}
	if err := run(ctx, []string{"payloadcost", "-n", "50", "-accounts", "5"}, getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bench", "varied, indented", "jsonb + ", "bytea zstd+dict (external)", "zstd levels", "better"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
