package store_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/testenv"
)

// planEvents is how many events the plan tests generate, over planDays
// days, in the partitions of planPartitionDays days.
const (
	planEvents        = 1_000_000
	planDays          = 50
	planPartitionDays = 60
)

// The console's list queries, on a table of a million events over 50
// days in 60 days' partitions, generated in Postgres itself, use an index
// for every filter and for a deep page (no sequential scan of a partition
// holding rows), and read few partitions: a page of the newest events
// reads the newest partitions only (an Ordered Append, newest first), a
// filtered page those its rows are in. Only the search by Stripe event id
// probes every partition's index: an event id names no day. The group
// claims and the look ahead read one partition per event. The test also
// times the first page and a page half a million rows deep (median of 5:
// the execution time Postgres reports, and ListEvents' own time).
func TestConsoleListQueriesUseIndexesOnAMillionEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a million rows")
	}
	t.Parallel()
	st, ctx := planStore(t, 5*time.Minute)
	holding := generatePlanEvents(t, ctx, st)

	// A cursor half-way down the newest-first list.
	var deep store.Cursor
	if err := st.DB().WithContext(ctx).Raw(`SELECT id FROM webhook_events ORDER BY id DESC OFFSET ? LIMIT 1`,
		planEvents/2).Row().Scan(&deep.WebhookID); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	all := planPartitionDays + 2
	cases := []struct {
		name     string
		filter   store.EventFilter
		before   store.Cursor
		maxParts int // partitions read
	}{
		{"all, first page", store.EventFilter{}, store.Cursor{}, 1},
		{"all, 500,000 deep", store.EventFilter{}, deep, 2},
		{"processed", store.EventFilter{Status: store.StatusProcessed}, store.Cursor{}, 2},
		{"processed, deep", store.EventFilter{Status: store.StatusProcessed}, deep, 2},
		{"waiting", store.EventFilter{Status: store.StatusWaiting}, store.Cursor{}, 3},
		{"failing", store.EventFilter{Status: store.StatusFailing}, store.Cursor{}, 3},
		{"dead", store.EventFilter{Status: store.StatusDead}, store.Cursor{}, 4},
		{"type", store.EventFilter{EventType: "capability.updated"}, store.Cursor{}, 2},
		{"type, deep", store.EventFilter{EventType: "capability.updated"}, deep, 2},
		{"account", store.EventFilter{Account: "acct_plan_17"}, store.Cursor{}, 8},
		{"account, deep", store.EventFilter{Account: "acct_plan_17"}, deep, 8},
		{"event id", store.EventFilter{StripeEventID: "evt_plan_123456"}, store.Cursor{}, all},
		{"time range", store.EventFilter{From: now.Add(-48 * time.Hour), To: now.Add(-47 * time.Hour)}, store.Cursor{}, 2},
		{"account and time range", store.EventFilter{Account: "acct_plan_17", From: now.Add(-72 * time.Hour), To: now.Add(-24 * time.Hour)}, store.Cursor{}, 3},
	}
	for _, c := range cases {
		checkListPlan(t, ctx, st, c.name, c.filter, c.before, c.maxParts, holding)
	}
	checkClaimPlans(t, ctx, st, holding)
}

// planStore opens a store on a database of its own for a plan test, and
// the context the test has timeout to run in.
func planStore(t *testing.T, timeout time.Duration) (*store.Store, context.Context) {
	t.Helper()
	st, err := store.Open(testenv.Database(t, ""), store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return st, ctx
}

// generatePlanEvents makes the partitions of planPartitionDays days to a
// week ahead and stores planEvents events over the planDays whole days
// before today (each day's partition holds a full day's events, whatever
// the time of day: a few minutes' worth are rightly scanned), 2,000
// accounts and five types; 1 % not processed: of those a third failing, a
// third dead. It returns the partitions that hold events.
func generatePlanEvents(t *testing.T, ctx context.Context, st *store.Store) map[string]bool {
	t.Helper()
	began := time.Now()
	if _, err := st.EnsurePartitions(ctx, began.AddDate(0, 0, 7-planPartitionDays+1), began.AddDate(0, 0, 7)); err != nil {
		t.Fatal(err)
	}
	db := st.DB().WithContext(ctx)
	if err := db.Exec(`SET synchronous_commit = off`).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`INSERT INTO webhook_events (id, stripe_event_id, event_type, payload, processed, processed_at, error,
			retry_count, dead_at, received_at, created_at, livemode, stripe_account_id)
		SELECT sw_event_id(floor(extract(epoch FROM t))::bigint, 'evt_plan_' || i), 'evt_plan_' || i,
			(ARRAY['account.updated','capability.updated','account.external_account.created',
				'account.external_account.updated','payout.paid'])[1 + i % 5],
			convert_to(json_build_object('id', 'evt_plan_' || i, 'account', 'acct_plan_' || (i % 2000))::text, 'UTF8'),
			i % 100 <> 0, CASE WHEN i % 100 <> 0 THEN t END,
			CASE WHEN i % 100 = 0 AND i % 300 <> 0 THEN 'handler: boom' END, CASE WHEN i % 100 = 0 AND i % 300 <> 0 THEN 1 ELSE 0 END,
			CASE WHEN i % 300 = 100 THEN t END, t, t, true, 'acct_plan_' || (i % 2000)
		FROM generate_series(1, ?::int) AS i,
			LATERAL (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') - (i - 0.5) * (? * interval '1 day' / ?::int) AS t) AS s`,
		planEvents, planDays, planEvents).Error; err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"SELECT sw_sync_pending()", "ANALYZE webhook_events", "ANALYZE pending_events"} {
		if err := db.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	var parts int
	if err := db.Raw(`SELECT count(*) FROM pg_inherits WHERE inhparent = 'webhook_events'::regclass`).Scan(&parts).Error; err != nil {
		t.Fatal(err)
	}
	if parts != planPartitionDays+2 {
		t.Fatalf("%d partitions, want %d days' and the past and future ones", parts, planPartitionDays)
	}
	var names []string
	if err := db.Raw(`SELECT DISTINCT tableoid::regclass::text FROM webhook_events`).Scan(&names).Error; err != nil {
		t.Fatal(err)
	}
	holding := map[string]bool{}
	for _, n := range names {
		holding[n] = true
	}
	t.Logf("%d events generated in %d partitions (%d holding events) and analysed in %s", planEvents, parts, len(holding),
		time.Since(began).Round(100*time.Millisecond))
	return holding
}

// checkListPlan fails t if ListEvents' query for filter and before scans a
// partition holding rows sequentially, reads more than maxParts of the
// partitions holding events, or returns nothing, and logs its times (median of 5: in
// Postgres, and through ListEvents).
func checkListPlan(t *testing.T, ctx context.Context, st *store.Store, name string, filter store.EventFilter, before store.Cursor,
	maxParts int, holding map[string]bool) {
	t.Helper()
	db := st.DB().WithContext(ctx)
	sql, err := st.ListEventsSQL(filter, before, 50)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
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
	var plan analysedPlan
	for range 5 {
		var raw string
		if err := db.Raw("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).Row().Scan(&raw); err != nil {
			t.Fatalf("%s: explain analyze: %v", name, err)
		}
		plan = parsePlan(t, name, raw)
		server = append(server, plan.ExecutionTime)
	}
	read := checkPlanReads(t, name, plan, maxParts, holding)
	slices.Sort(times)
	slices.Sort(server)
	t.Logf("%-24s median of 5: %.2f ms in Postgres, %s through ListEvents (partitions holding events read: %d)", name, server[2],
		times[2].Round(10*time.Microsecond), len(read))
}

// checkClaimPlans fails t if a group's claim of 16 waiting events of
// different days, or its look ahead of 16 more, reads more partitions than
// the events' days, or scans one with rows sequentially; or if the custom
// plans Postgres makes of them at each execution take in more partitions
// than the days of their events (planning each partition the retention
// keeps would cost every group more as partitions are added).
func checkClaimPlans(t *testing.T, ctx context.Context, st *store.Store, holding map[string]bool) {
	t.Helper()
	var ids []string
	if err := st.DB().WithContext(ctx).Raw(`SELECT id FROM pending_events WHERE NOT failed AND NOT dead
		ORDER BY id LIMIT 16 OFFSET 1000`).Scan(&ids).Error; err != nil || len(ids) != 16 {
		t.Fatalf("%d waiting events (%v)", len(ids), err)
	}
	from := time.Now().AddDate(0, 0, -30)
	plans, err := st.ExplainGroupClaim(ctx, ids, 16, from)
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range plans {
		plan := parsePlan(t, name, raw)
		read := checkPlanReads(t, name, plan, 3, holding)
		t.Logf("%-24s %.2f ms in Postgres (partitions read: %v)", "claim: "+name, plan.ExecutionTime, read)
	}
	custom, err := st.ExplainCustomGroupClaim(ctx, ids, 16, from)
	if err != nil {
		t.Fatal(err)
	}
	if len(custom) != len(plans) {
		t.Fatalf("%d custom plans, %d generic ones", len(custom), len(plans))
	}
	for name, raw := range custom {
		planned := parsePlan(t, name, raw).Plan.partitionsPlanned()
		if len(planned) > 3 {
			t.Errorf("claim: %s: custom plan takes in %d partitions, want at most the 3 days of its events: %v",
				name, len(planned), planned)
		}
		t.Logf("%-24s custom plan takes in %d partitions", "claim: "+name, len(planned))
	}
}

// TestGroupClaimLooksItsEventsUpWithoutStatistics checks that a group's
// claim of 32 events, and of 32 taken ahead, looks each up by id in today's
// partition before Postgres has taken any statistics of it (a day's
// partition is made ahead, empty, and autovacuum analyses it only once it
// has changed enough): a list of ids joined to the partition was then
// planned as a scan of the whole day, for every group.
func TestGroupClaimLooksItsEventsUpWithoutStatistics(t *testing.T) {
	t.Parallel()
	st, ctx := planStore(t, time.Minute)
	db := st.DB().WithContext(ctx)
	var parts []string
	if err := db.Raw(`SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'webhook_events'::regclass`).
		Scan(&parts).Error; err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if err := db.Exec("ALTER TABLE " + p + " SET (autovacuum_enabled = off)").Error; err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Exec(`INSERT INTO webhook_events (id, stripe_event_id, event_type, payload, received_at, created_at)
		SELECT sw_event_id(floor(extract(epoch FROM now()))::bigint - i % 60, 'evt_nostats_' || i), 'evt_nostats_' || i,
			'account.updated', convert_to('{}', 'UTF8'), now(), now() - interval '1 hour' + i * interval '1 ms'
		FROM generate_series(1, 20000) AS i`).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec("SELECT sw_sync_pending()").Error; err != nil {
		t.Fatal(err)
	}
	var ids []string
	if err := db.Raw(`SELECT id FROM pending_events ORDER BY id LIMIT 32 OFFSET 5000`).Scan(&ids).Error; err != nil || len(ids) != 32 {
		t.Fatalf("%d waiting events (%v)", len(ids), err)
	}
	plans, err := st.ExplainCustomGroupClaim(ctx, ids, 32, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"claim", "claim ahead", "present"} {
		plan := parsePlan(t, name, plans[name])
		if n := plan.Plan.partitionRowsRead(); n > 32 {
			t.Errorf("%s: read %d rows of webhook_events' partitions for 32 events", name, n)
		}
		t.Logf("%-12s %.2f ms in Postgres, %d rows of partitions read", name, plan.ExecutionTime, plan.Plan.partitionRowsRead())
	}
}

// TestLookAheadReadsWhatItTakesOnABacklog checks that a group's look
// ahead, with 20,000 events pending, reads the pending rows it takes and
// no others, whatever plan Postgres makes of it: custom or generic (a
// connection's prepared statement turns generic after five executions),
// before pending_events has statistics and after. A generic plan once deleted
// the rows taken by joining them to every pending row (a hash join over
// pending_events' primary key): each group then read the whole backlog,
// and the further the worker fell behind, the more each group cost.
func TestLookAheadReadsWhatItTakesOnABacklog(t *testing.T) {
	t.Parallel()
	st, ctx := planStore(t, time.Minute)
	db := st.DB().WithContext(ctx)
	if err := db.Exec("ALTER TABLE pending_events SET (autovacuum_enabled = off)").Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`INSERT INTO webhook_events (id, stripe_event_id, event_type, payload, received_at, created_at)
		SELECT sw_event_id(floor(extract(epoch FROM now()))::bigint - 3600 + i / 10, 'evt_backlog_' || i), 'evt_backlog_' || i,
			'account.updated', convert_to('{}', 'UTF8'), now(), now() - interval '1 hour' + i * interval '100 ms'
		FROM generate_series(1, 20000) AS i ORDER BY 1`).Error; err != nil {
		t.Fatal(err)
	}
	// Pending rows in the order the ingest adds them, as their ids go.
	if err := db.Exec(`INSERT INTO pending_events (id, created_at) SELECT id, created_at FROM webhook_events ORDER BY id`).
		Error; err != nil {
		t.Fatal(err)
	}
	var ids []string
	if err := db.Raw(`SELECT id FROM pending_events ORDER BY id LIMIT 2 OFFSET 5000`).Scan(&ids).Error; err != nil || len(ids) != 2 {
		t.Fatalf("%d waiting events (%v)", len(ids), err)
	}
	from := time.Now().Add(-2 * time.Hour)
	for _, analysed := range []bool{false, true} {
		if analysed {
			if err := db.Exec("ANALYZE pending_events").Error; err != nil {
				t.Fatal(err)
			}
		}
		for mode, explain := range map[string]func(context.Context, []string, int, time.Time) (map[string]string, error){
			"generic": st.ExplainGroupClaim, "custom": st.ExplainCustomGroupClaim} {
			plans, err := explain(ctx, ids, 32, from)
			if err != nil {
				t.Fatal(err)
			}
			plan := parsePlan(t, "look ahead", plans["look ahead"])
			// 32 rows taken, each read through the created_at index and
			// again to be deleted (the jobs' own come later).
			if n := plan.Plan.rowsRead("pending_events"); n > 2*32 {
				t.Errorf("look ahead, %s plan, statistics %v: read %d pending rows to take 32 of 20,000", mode, analysed, n)
			}
			t.Logf("look ahead, %-7s plan, statistics %-5v: %.2f ms in Postgres, %d pending rows read", mode, analysed,
				plan.ExecutionTime, plan.Plan.rowsRead("pending_events"))
		}
	}
}

// analysedPlan is EXPLAIN (ANALYZE, FORMAT JSON)'s answer.
type analysedPlan struct {
	Plan          planNode
	ExecutionTime float64 `json:"Execution Time"`
}

func parsePlan(t *testing.T, name, raw string) analysedPlan {
	t.Helper()
	var plans []analysedPlan
	if err := json.Unmarshal([]byte(raw), &plans); err != nil || len(plans) != 1 {
		t.Fatalf("%s: plan %s: %v", name, raw, err)
	}
	return plans[0]
}

// checkPlanReads fails t if plan scanned a table holding rows sequentially
// or read more than maxParts of the partitions of webhook_events holding
// events (reading an empty one, a day ahead, costs a page), and returns
// those it read.
func checkPlanReads(t *testing.T, name string, plan analysedPlan, maxParts int, holding map[string]bool) []string {
	t.Helper()
	if seq := plan.Plan.seqScans(); len(seq) > 0 {
		t.Errorf("%s: sequential scan of %v", name, seq)
	}
	var read []string
	for _, p := range plan.Plan.partitionsRead() {
		if holding[p] {
			read = append(read, p)
		}
	}
	if len(read) > maxParts {
		t.Errorf("%s: read %d partitions holding events, want at most %d: %v", name, len(read), maxParts, read)
	}
	return read
}

// planNode is a node of EXPLAIN (ANALYZE, FORMAT JSON).
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	IndexName string     `json:"Index Name"`
	Loops     int        `json:"Actual Loops"`
	Removed   int        `json:"Rows Removed by Filter"`
	Rows      int        `json:"Actual Rows"`
	Plans     []planNode `json:"Plans"`
	Targets   []planNode `json:"Target Tables"`
}

// seqScans lists the relations this plan read sequentially, finding rows
// (an executed Seq Scan of an empty partition reads no page).
func (n planNode) seqScans() []string {
	var out []string
	if n.NodeType == "Seq Scan" && n.Loops > 0 && n.Rows+n.Removed > 0 {
		out = append(out, n.Relation)
	}
	for _, c := range n.Plans {
		out = append(out, c.seqScans()...)
	}
	return out
}

// partitionRowsRead is the rows the scans of webhook_events' partitions in
// this plan read, kept or filtered out, over all their loops.
func (n planNode) partitionRowsRead() int { return n.rowsRead("webhook_events_") }

// rowsRead is the rows the scans of the relations whose names begin with
// prefix read in this plan, kept or filtered out, over all their loops.
func (n planNode) rowsRead(prefix string) int {
	read := 0
	if strings.HasPrefix(n.Relation, prefix) && strings.HasSuffix(n.NodeType, "Scan") {
		read = (n.Rows + n.Removed) * n.Loops
	}
	for _, c := range n.Plans {
		read += c.rowsRead(prefix)
	}
	return read
}

// partitionsPlanned lists the partitions of webhook_events this plan names,
// read or not.
func (n planNode) partitionsPlanned() []string {
	seen := map[string]bool{}
	var walk func(planNode)
	walk = func(n planNode) {
		if strings.HasPrefix(n.Relation, "webhook_events_") {
			seen[n.Relation] = true
		}
		for _, c := range slices.Concat(n.Plans, n.Targets) {
			walk(c)
		}
	}
	walk(n)
	return slices.Sorted(maps.Keys(seen))
}

// partitionsRead lists the partitions of webhook_events this plan read.
func (n planNode) partitionsRead() []string {
	seen := map[string]bool{}
	var walk func(planNode)
	walk = func(n planNode) {
		if n.Loops > 0 && strings.HasPrefix(n.Relation, "webhook_events_") {
			seen[n.Relation] = true
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(n)
	out := make([]string, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}
