package store

import "gorm.io/gorm"

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
