package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pressly/goose/v3/database"
)

// invalidIndex is an index of a table of the schema that Postgres does not
// use (pg_index.indisvalid false).
type invalidIndex struct {
	name        string // schema-qualified, quoted as needed
	partitioned bool   // an index of a partitioned table
	// transient: named as REINDEX CONCURRENTLY names the copy it builds
	// (_ccnew) or the original it retires (_ccold); an invalid one is
	// the leftover of a rebuild that was cut off.
	transient bool
}

// invalidIndexesSQL lists the invalid indexes of the tables of the schema
// the migrations run in (the current schema, where goose keeps its version
// table), leftovers of REINDEX CONCURRENTLY first.
const invalidIndexesSQL = `SELECT format('%I.%I', n.nspname, c.relname), c.relkind = 'I',
	c.relname ~ '_cc(new|old)[0-9]*$'
	FROM pg_index i
	JOIN pg_class c ON c.oid = i.indexrelid
	JOIN pg_class t ON t.oid = i.indrelid
	JOIN pg_namespace n ON n.oid = t.relnamespace
	WHERE NOT i.indisvalid AND n.nspname = current_schema()
	ORDER BY 3 DESC, 1`

func invalidIndexes(ctx context.Context, db database.DBTxConn) ([]invalidIndex, error) {
	rows, err := db.QueryContext(ctx, invalidIndexesSQL)
	if err != nil {
		return nil, fmt.Errorf("list invalid indexes: %w", err)
	}
	defer rows.Close()
	var out []invalidIndex
	for rows.Next() {
		var ix invalidIndex
		if err := rows.Scan(&ix.name, &ix.partitioned, &ix.transient); err != nil {
			return nil, fmt.Errorf("list invalid indexes: %w", err)
		}
		out = append(out, ix)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list invalid indexes: %w", err)
	}
	return out, nil
}

// repairIndexes brings back, on conn, the invalid indexes an interrupted
// CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY left in the schema,
// whether or not the version of the migration that made them is recorded.
// It drops the leftovers of REINDEX CONCURRENTLY, and rebuilds every other
// invalid index with REINDEX INDEX CONCURRENTLY: same name and definition,
// writes never blocked. If that is cut off in turn, the next run finds its
// leftover and does it again.
//
// An invalid index of a partitioned table is left alone: no rebuild makes it
// valid (REINDEX does nothing to it), attaching an index of every partition
// does, which is the work of the migration that created it. The checks before
// recording a version and at the end of the run hold that migration to it.
func repairIndexes(ctx context.Context, conn *sql.Conn, log *slog.Logger) error {
	invalid, err := invalidIndexes(ctx, conn)
	if err != nil {
		return err
	}
	for _, ix := range invalid {
		stmt, what := "REINDEX INDEX CONCURRENTLY ", "rebuilding an invalid index"
		switch {
		case ix.partitioned:
			log.Warn("invalid index of a partitioned table left to its migration", "index", ix.name)
			continue
		case ix.transient:
			stmt, what = "DROP INDEX CONCURRENTLY IF EXISTS ", "dropping the leftover of an interrupted rebuild"
		}
		log.Info(what, "index", ix.name)
		if _, err := conn.ExecContext(ctx, stmt+ix.name); err != nil {
			return fmt.Errorf("repair index %s: %w", ix.name, err)
		}
	}
	return nil
}

// requireValidIndexes fails, naming them, if any index of the schema is
// invalid.
func requireValidIndexes(ctx context.Context, db database.DBTxConn) error {
	invalid, err := invalidIndexes(ctx, db)
	if err != nil || len(invalid) == 0 {
		return err
	}
	names := make([]string, len(invalid))
	for i, ix := range invalid {
		names[i] = ix.name
	}
	return fmt.Errorf("invalid index: %s", strings.Join(names, ", "))
}
