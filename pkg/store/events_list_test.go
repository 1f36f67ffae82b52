package store_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"gorm.io/gorm"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/testenv"
)

// planEvents is how many events the plan test generates.
const planEvents = 1_000_000

// The console's list queries use an index on a table of a million events,
// generated in Postgres itself, for every filter and for a deep page: no
// sequential scan of webhook_events in any plan. The test also times the
// first page and a page half a million rows deep (median of 5: the
// execution time Postgres reports, and ListEvents' own time).
func TestConsoleListQueriesUseIndexesOnAMillionEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a million rows")
	}
	t.Parallel()
	st, err := store.Open(testenv.Database(t, ""), store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := st.DB().WithContext(ctx)
	generatePlanEvents(t, db)

	// A cursor half-way down the newest-first list.
	var deep store.Cursor
	if err := db.Raw(`SELECT created_at, id FROM webhook_events ORDER BY created_at DESC, id DESC OFFSET ? LIMIT 1`,
		planEvents/2).Row().Scan(&deep.CreatedAt, &deep.WebhookID); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	cases := []struct {
		name   string
		filter store.EventFilter
		before store.Cursor
	}{
		{"all, first page", store.EventFilter{}, store.Cursor{}},
		{"all, 500,000 deep", store.EventFilter{}, deep},
		{"processed", store.EventFilter{Status: store.StatusProcessed}, store.Cursor{}},
		{"processed, deep", store.EventFilter{Status: store.StatusProcessed}, deep},
		{"waiting", store.EventFilter{Status: store.StatusWaiting}, store.Cursor{}},
		{"failing", store.EventFilter{Status: store.StatusFailing}, store.Cursor{}},
		{"dead", store.EventFilter{Status: store.StatusDead}, store.Cursor{}},
		{"type", store.EventFilter{EventType: "capability.updated"}, store.Cursor{}},
		{"type, deep", store.EventFilter{EventType: "capability.updated"}, deep},
		{"account", store.EventFilter{Account: "acct_plan_17"}, store.Cursor{}},
		{"account, deep", store.EventFilter{Account: "acct_plan_17"}, deep},
		{"event id", store.EventFilter{StripeEventID: "evt_plan_123456"}, store.Cursor{}},
		{"time range", store.EventFilter{From: now.Add(-48 * time.Hour), To: now.Add(-47 * time.Hour)}, store.Cursor{}},
		{"account and time range", store.EventFilter{Account: "acct_plan_17", From: now.Add(-72 * time.Hour), To: now.Add(-24 * time.Hour)}, store.Cursor{}},
	}
	for _, c := range cases {
		checkListPlan(t, ctx, st, c.name, c.filter, c.before)
	}
}

// generatePlanEvents stores planEvents events: one a second back from now,
// over 2,000 accounts and five types; 1 % not processed: of those a third
// failing, a third dead.
func generatePlanEvents(t *testing.T, db *gorm.DB) {
	t.Helper()
	began := time.Now()
	if err := db.Exec(`SET synchronous_commit = off`).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`INSERT INTO webhook_events (stripe_event_id, event_type, payload, processed, processed_at, error, retry_count,
			dead_at, received_at, created_at, livemode, stripe_account_id)
		SELECT 'evt_plan_' || i, (ARRAY['account.updated','capability.updated','account.external_account.created',
				'account.external_account.updated','payout.paid'])[1 + i % 5],
			jsonb_build_object('id', 'evt_plan_' || i, 'account', 'acct_plan_' || (i % 2000)),
			i % 100 <> 0, CASE WHEN i % 100 <> 0 THEN t END,
			CASE WHEN i % 100 = 0 AND i % 300 <> 0 THEN 'handler: boom' END, CASE WHEN i % 100 = 0 AND i % 300 <> 0 THEN 1 ELSE 0 END,
			CASE WHEN i % 300 = 100 THEN t END, t, t, true, 'acct_plan_' || (i % 2000)
		FROM generate_series(1, ?::int) AS i, LATERAL (SELECT (now() AT TIME ZONE 'UTC') - i * interval '1 second' AS t) AS s`,
		planEvents).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`ANALYZE webhook_events`).Error; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events generated and analysed in %s", planEvents, time.Since(began).Round(100*time.Millisecond))
}

// checkListPlan fails t if ListEvents' query for filter and before scans
// webhook_events sequentially or returns nothing, and logs its times
// (median of 5: in Postgres, and through ListEvents).
func checkListPlan(t *testing.T, ctx context.Context, st *store.Store, name string, filter store.EventFilter, before store.Cursor) {
	t.Helper()
	db := st.DB().WithContext(ctx)
	sql, err := st.ListEventsSQL(filter, before, 50)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var raw string
	if err := db.Raw("EXPLAIN (FORMAT JSON) " + sql).Row().Scan(&raw); err != nil {
		t.Fatalf("%s: explain: %v", name, err)
	}
	var plan []struct{ Plan planNode }
	if err := json.Unmarshal([]byte(raw), &plan); err != nil || len(plan) != 1 {
		t.Fatalf("%s: plan %s: %v", name, raw, err)
	}
	if seq := plan[0].Plan.seqScans(); len(seq) > 0 {
		t.Errorf("%s: sequential scan of %v:\n%s", name, seq, raw)
	}
	var times []time.Duration
	for range 5 {
		start := time.Now()
		rows, err := st.ListEvents(ctx, filter, before, 50)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		times = append(times, time.Since(start))
		if len(rows) == 0 {
			t.Errorf("%s: no rows", name)
		}
	}
	var server []float64
	for range 5 {
		if err := db.Raw("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).Row().Scan(&raw); err != nil {
			t.Fatalf("%s: explain analyze: %v", name, err)
		}
		var analysed []struct {
			ExecutionTime float64 `json:"Execution Time"`
		}
		if err := json.Unmarshal([]byte(raw), &analysed); err != nil || len(analysed) != 1 {
			t.Fatalf("%s: %s: %v", name, raw, err)
		}
		server = append(server, analysed[0].ExecutionTime)
	}
	slices.Sort(times)
	slices.Sort(server)
	t.Logf("%-24s median of 5: %.2f ms in Postgres, %s through ListEvents (indexes: %v)", name, server[2],
		times[2].Round(10*time.Microsecond), plan[0].Plan.indexes())
}

// planNode is a node of EXPLAIN (FORMAT JSON).
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	IndexName string     `json:"Index Name"`
	Plans     []planNode `json:"Plans"`
}

// seqScans lists the relations this plan scans sequentially.
func (n planNode) seqScans() []string {
	var out []string
	if n.NodeType == "Seq Scan" {
		out = append(out, n.Relation)
	}
	for _, c := range n.Plans {
		out = append(out, c.seqScans()...)
	}
	return out
}

// indexes lists the indexes this plan reads.
func (n planNode) indexes() []string {
	var out []string
	if n.IndexName != "" {
		out = append(out, n.IndexName)
	}
	for _, c := range n.Plans {
		out = append(out, c.indexes()...)
	}
	return out
}
