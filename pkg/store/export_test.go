package store

import (
	"context"
	"io/fs"

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

// Flush stores evs as one batch on the calling goroutine, as a flusher
// does with the deliveries it gathered, and returns each one's error.
func (in *Inserter) Flush(evs []NewEvent) []error {
	batch := make([]*insertReq, len(evs))
	for i, ev := range evs {
		batch[i] = &insertReq{ev: ev, done: make(chan struct{})}
	}
	in.flush(batch, &batchParams{})
	errs := make([]error, len(batch))
	for i, r := range batch {
		<-r.done
		errs[i] = r.err
	}
	return errs
}

// MigrateFS is Migrate with the migrations of fsys.
func MigrateFS(ctx context.Context, databaseURL string, fsys fs.FS, opts MigrateOptions) (int, error) {
	return migrate(ctx, databaseURL, fsys, opts)
}
