package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stripe-webhooks/pkg/store"
)

// Entries come back as written, newest first; each filter and the keyset
// cursor narrow the list, and pages follow one another without a gap or a
// repeat.
func TestAuditListNewestFirstFilteredAndPaged(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	failed := "dead job not found"
	var ids []int64
	for i, e := range []store.AuditEntry{
		{Username: "ana@example.com", Role: "operator", Action: "replay", Method: "POST", Path: "/events/evt_1/replay",
			StripeEventIDs: []string{"evt_1"}, Detail: "applied", Status: 303},
		{Username: "bo@example.com", Role: "operator", Action: "retry_dead_job", Method: "POST", Path: "/retry_dead_job/1/j1",
			JobIDs: []string{"j1"}, StripeEventIDs: []string{"evt_2"}, Status: 500, Error: &failed},
		{Username: "ana@example.com", Role: "operator", Action: "retry_all_dead_jobs", Method: "POST", Path: "/retry_all_dead_jobs",
			Detail: "3 dead jobs", Status: 200},
		{Username: "ana@example.com", Role: "operator", Action: "replay", Method: "POST", Path: "/events/evt_3/replay",
			StripeEventIDs: []string{"evt_3"}, Detail: "applied", Status: 303},
	} {
		e.At = at.Add(time.Duration(i) * time.Second)
		id, err := s.InsertAudit(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	all, err := s.ListAudit(ctx, store.AuditFilter{}, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 || all[0].ID != ids[3] || all[3].ID != ids[0] {
		t.Fatalf("list = %+v, want the four entries newest first", all)
	}
	want := store.AuditEntry{ID: ids[1], At: at.Add(time.Second), Username: "bo@example.com", Role: "operator", Action: "retry_dead_job",
		Method: "POST", Path: "/retry_dead_job/1/j1", StripeEventIDs: []string{"evt_2"}, JobIDs: []string{"j1"}, Status: 500, Error: &failed}
	if diff := cmp.Diff(want, all[2]); diff != "" {
		t.Errorf("entry read back (-want +got):\n%s", diff)
	}
	for name, c := range map[string]struct {
		f    store.AuditFilter
		want []int64
	}{
		"user":            {store.AuditFilter{Username: "ana@example.com"}, []int64{ids[3], ids[2], ids[0]}},
		"action":          {store.AuditFilter{Action: "replay"}, []int64{ids[3], ids[0]}},
		"user and action": {store.AuditFilter{Username: "bo@example.com", Action: "replay"}, nil},
	} {
		if got := listIDs(t, s, c.f, 0, 10); !cmp.Equal(got, c.want) {
			t.Errorf("%s: ids %v, want %v", name, got, c.want)
		}
	}
	// Pages of two: the second starts below the first's last id.
	first := listIDs(t, s, store.AuditFilter{}, 0, 2)
	second := listIDs(t, s, store.AuditFilter{}, first[1], 2)
	if got := append(first, second...); !cmp.Equal(got, []int64{ids[3], ids[2], ids[1], ids[0]}) {
		t.Errorf("two pages: %v", got)
	}
}

func listIDs(t *testing.T, s *store.Store, f store.AuditFilter, before int64, limit int) []int64 {
	t.Helper()
	rows, err := s.ListAudit(context.Background(), f, before, limit)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, r := range rows {
		out = append(out, r.ID)
	}
	return out
}

// The /audit page's queries walk an index, on 200,000 entries, for every
// filter, first page and deep: no sequential scan, no sort.
func TestAuditListQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	_, url := setup(t)
	conn := connectPgx(t, url)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `INSERT INTO audit_log (at, username, role, action, method, path, status)
		SELECT now() - i * interval '1 second', 'user' || (i % 50) || '@example.com', 'operator',
			(ARRAY['replay', 'replay_bulk', 'retry_dead_job', 'delete_dead_job', 'retry_all_dead_jobs'])[1 + i % 5],
			'POST', '/x', 200
		FROM generate_series(1, 200000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE audit_log"); err != nil {
		t.Fatal(err)
	}
	deep := int64(100000)
	for name, c := range map[string]struct {
		f      store.AuditFilter
		before int64
	}{
		"all":                   {store.AuditFilter{}, 0},
		"all, deep":             {store.AuditFilter{}, deep},
		"user":                  {store.AuditFilter{Username: "user7@example.com"}, 0},
		"user, deep":            {store.AuditFilter{Username: "user7@example.com"}, deep},
		"action":                {store.AuditFilter{Action: "retry_dead_job"}, 0},
		"action, deep":          {store.AuditFilter{Action: "retry_dead_job"}, deep},
		"user and action":       {store.AuditFilter{Username: "user7@example.com", Action: "retry_dead_job"}, 0},
		"user and action, deep": {store.AuditFilter{Username: "user7@example.com", Action: "retry_dead_job"}, deep},
	} {
		sql, args := store.ListAuditQuery(c.f, c.before, 50)
		rows, err := conn.Query(ctx, "EXPLAIN "+sql, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		text := strings.Join(plan, "\n")
		if strings.Contains(text, "Seq Scan") || strings.Contains(text, "Sort") || !strings.Contains(text, "Index") {
			t.Errorf("%s: plan is not an index walk:\n%s", name, text)
		}
	}
}
