package store

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// ListEventsSQL is ListEvents' statement with its values inlined, for the
// tests that EXPLAIN it.
func (s *Store) ListEventsSQL(f EventFilter, before Cursor, limit int) (string, error) {
	var err error
	sql := s.db.ToSQL(func(tx *gorm.DB) *gorm.DB {
		q, qerr := listEventsQuery(tx, f, before, limit)
		if qerr != nil {
			err = qerr
			return tx
		}
		var rows []EventSummary
		return q.Find(&rows)
	})
	return sql, err
}

// StoreBatch stores evs as one batch on the calling goroutine, as a batch
// loop does with the deliveries it gathered, and returns each one's error.
func (in *Inserter) StoreBatch(evs []NewEvent) []error {
	batch := make([]*delivery, len(evs))
	for i, ev := range evs {
		batch[i] = &delivery{ev: ev, done: make(chan struct{})}
	}
	in.storeBatch(batch, &batchParams{})
	errs := make([]error, len(batch))
	for i, d := range batch {
		<-d.done
		errs[i] = d.err
	}
	return errs
}

// MigrateFS is Migrate with the migrations of fsys.
func MigrateFS(ctx context.Context, databaseURL string, fsys fs.FS, opts MigrateOptions) (int, error) {
	return migrate(ctx, databaseURL, fsys, opts)
}

// ExplainGroupClaim runs a group's claim statements (of its jobs' events
// ids, looking ahead for ahead more from from) under EXPLAIN (ANALYZE,
// FORMAT JSON) with generic plans, as prepared statements may end up with,
// in a transaction it rolls back; it returns each statement's plan.
func (s *Store) ExplainGroupClaim(ctx context.Context, ids []string, ahead int, from time.Time) (map[string]string, error) {
	return s.explainGroupClaim(ctx, ids, ahead, from, "force_generic_plan")
}

// ExplainCustomGroupClaim is ExplainGroupClaim with custom plans, made for
// the parameters of each execution as Postgres makes them for the claims.
func (s *Store) ExplainCustomGroupClaim(ctx context.Context, ids []string, ahead int, from time.Time) (map[string]string, error) {
	return s.explainGroupClaim(ctx, ids, ahead, from, "force_custom_plan")
}

func (s *Store) explainGroupClaim(ctx context.Context, ids []string, ahead int, from time.Time, mode string) (map[string]string, error) {
	plans := map[string]string{}
	now := time.Now().UTC()
	err := s.withConn(ctx, func(conn *pgx.Conn) error {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		for _, set := range []string{"plan_cache_mode = " + mode, "enable_seqscan = off", "enable_bitmapscan = off"} {
			if _, err := tx.Exec(ctx, "SET LOCAL "+set); err != nil {
				return err
			}
		}
		lo, hi := idSpan(ids)
		// Each statement is prepared, and its execution explained: EXPLAIN
		// of the statement itself would plan it for the values given,
		// whatever plan_cache_mode says.
		prepared := 0
		explain := func(name, sql string, args ...any) error {
			prepared++
			stmt := fmt.Sprintf("sw_explain_%d", prepared)
			if _, err := tx.Exec(ctx, "PREPARE "+stmt+" AS "+sql); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			defer func() { _, _ = tx.Exec(ctx, "DEALLOCATE "+stmt) }()
			values := make([]string, len(args))
			for i, a := range args {
				values[i] = literal(a)
			}
			var plan string
			if err := tx.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE "+stmt+"("+strings.Join(values, ", ")+")").
				Scan(&plan); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			plans[name] = plan
			return nil
		}
		for _, st := range []struct {
			name, sql string
			args      []any
		}{
			{"unpend", unpendEvents, []any{ids}},
			{"claim", claimEvents, []any{ids, now, lo, hi}},
			{"look ahead", lookAheadTake, []any{ids, ahead, from}},
			{"present", presentEvents, []any{ids, lo, hi}},
		} {
			if err := explain(st.name, st.sql, st.args...); err != nil {
				return err
			}
		}
		// The events a look takes are claimed as the jobs' are: take the
		// next ones, and explain their claim.
		rows, _ := tx.Query(ctx, lookAheadTake, ids, ahead, from)
		taken, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("look ahead: %w", err)
		}
		lo, hi = idSpan(taken)
		return explain("claim ahead", claimEvents, taken, now, lo, hi)
	})
	return plans, err
}

// literal is v as an SQL literal, for the values explainGroupClaim's
// statements take: ids and lists of them (no quote in them), counts and
// times.
func literal(v any) string {
	switch v := v.(type) {
	case []string:
		return "'{" + strings.Join(v, ",") + "}'"
	case string:
		return "'" + v + "'"
	case time.Time:
		return "'" + v.UTC().Format("2006-01-02 15:04:05.999999") + "'"
	default:
		return fmt.Sprint(v)
	}
}

// DayPartition is dayPartition's name for the event with row id webhookID
// ("" if the id is not a uuid).
func DayPartition(webhookID string) string {
	name, _ := dayPartition(webhookID)
	return name
}

// Quiet reports whether the Applier's groups found no backlog: its jobs
// then read whether their events are done before joining a group.
func (a *Applier) Quiet() bool { return a.ahead.quiet() }
