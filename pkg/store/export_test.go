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
