package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuditEntry is one row of audit_log: a change made through the web UI.
type AuditEntry struct {
	ID             int64     `db:"id"`
	At             time.Time `db:"at"`
	Username       string    `db:"username"`
	Role           string    `db:"role"`
	Action         string    `db:"action"`
	Method         string    `db:"method"`
	Path           string    `db:"path"`
	StripeEventIDs []string  `db:"stripe_event_ids"`
	JobIDs         []string  `db:"job_ids"`
	Detail         string    `db:"detail"`
	Status         int       `db:"status"` // the HTTP status of the answer
	Error          *string   `db:"error"`
}

// AuditFilter narrows ListAudit; empty fields do not filter.
type AuditFilter struct {
	Username string
	Action   string
}

// InsertAudit writes e (its ID is ignored; a zero At means now) and
// returns its id.
func (s *Store) InsertAudit(ctx context.Context, e AuditEntry) (int64, error) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	var id int64
	err := s.withConn(ctx, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `INSERT INTO audit_log
			(at, username, role, action, method, path, stripe_event_ids, job_ids, detail, status, error)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
			e.At.UTC(), e.Username, e.Role, e.Action, e.Method, e.Path, nonNil(e.StripeEventIDs), nonNil(e.JobIDs),
			e.Detail, e.Status, e.Error).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("store: insert audit entry: %w", err)
	}
	return id, nil
}

// ListAudit returns up to limit entries matching f, newest first, with an
// id below before (0: from the newest). Each filter walks its index
// (username, id) or (action, id), and no filter the primary key, so a deep
// page costs what the first does.
func (s *Store) ListAudit(ctx context.Context, f AuditFilter, before int64, limit int) ([]AuditEntry, error) {
	sql, args := listAuditQuery(f, before, limit)
	var out []AuditEntry
	err := s.withConn(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowToStructByName[AuditEntry])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: list audit entries: %w", err)
	}
	return out, nil
}

// listAuditQuery is ListAudit's statement and its arguments.
func listAuditQuery(f AuditFilter, before int64, limit int) (string, []any) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Username != "" {
		add("username = $%d", f.Username)
	}
	if f.Action != "" {
		add("action = $%d", f.Action)
	}
	if before > 0 {
		add("id < $%d", before)
	}
	sql := `SELECT id, at, username, role, action, method, path, stripe_event_ids, job_ids, detail, status, error FROM audit_log`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	return sql + fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args)), args
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
