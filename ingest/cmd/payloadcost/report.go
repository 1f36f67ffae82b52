package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// printResults prints one row per corpus and form, per event.
func printResults(w io.Writer, results []result) {
	fmt.Fprintln(w, "Per event. table: growth after VACUUM (heap + TOAST); WAL: this session's inserts (EXPLAIN), FPI: full-page images;")
	fmt.Fprintln(w, "WAL server: pg_current_wal_lsn's advance meanwhile, other sessions' included; mark WAL: UPDATE … SET processed = true of every row;")
	fmt.Fprintln(w, "CPU in µs; read: all payloads back in one query.")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "corpus\tform\traw B\tstored B\ttable B\theap\tTOAST\tWAL B\tFPI\tWAL server\tmark WAL B\tPG insert µs\tPG read µs\tread ms\tread B\tGo encode µs\tGo decode µs\texact\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.3f\t%.0f\t%.0f\t%.1f\t%.1f\t%d\t%.0f\t%.1f\t%.1f\t%v\t\n",
			r.corpus, r.form, r.raw, r.datum, r.heap+r.toast, r.heap, r.toast, r.wal, r.walFPI, r.walServer, r.walMark,
			r.pgInsert, r.pgRead, r.readWall.Milliseconds(), r.readBytes, r.encode, r.decode, yesNo(r.exact))
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// printLevels prints the level table.
func printLevels(w io.Writer, rows []levelRow) {
	fmt.Fprintln(w, "zstd levels (Go only), per event: stored bytes and Go CPU; the dictionary is stripe-1.dict, built for pkg/payload's level.")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "corpus\tlevel\tdictionary\tstored B\tencode µs\tdecode µs\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%.0f\t%.1f\t%.1f\t\n", r.corpus, r.level, yesNo(r.dict), r.size, r.encode, r.decode)
	}
	tw.Flush()
}
