package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"stripe-webhooks/pkg/telemetry"
)

// group is one transaction of an Applier: the events of its jobs, and
// those it claims ahead of theirs. Its steps, in run's order: claim, lock
// the accounts, apply, commit; then answer, once committed.
type group struct {
	a    *Applier
	jobs []*job
	ids  []string  // the jobs' events, one per job
	now  time.Time // when it claims: the events' processed_at
	look *look     // where it looks ahead; nil: it does not
	// events are what it claimed, in the order it applies them once the
	// accounts are locked.
	events []member
	// present are those of ids that have a row, claimed or not.
	present []string
	// failed is the event whose handler failed, or was running when the
	// deadline passed.
	failed *member
}

// member is an event a group claimed.
type member struct {
	WebhookEvent
	ahead   bool   // claimed ahead of its job
	account string // its connected account, as the Applier names it
}

func (a *Applier) newGroup(jobs []*job) *group {
	g := &group{a: a, jobs: jobs, ids: make([]string, len(jobs)), now: time.Now().UTC(), look: a.ahead.next()}
	for i, j := range jobs {
		g.ids[i] = j.webhookID
	}
	return g
}

// run is the group's transaction on conn. Any error rolls it all back (as
// withConn leaves the connection) and is returned.
func (g *group) run(ctx context.Context, conn *pgx.Conn) error {
	if err := g.claim(ctx, conn); err != nil {
		return err
	}
	if len(g.events) == 0 {
		_, err := conn.Exec(ctx, "COMMIT")
		return err
	}
	tx := newTx(conn)
	lockCtx, span := startStep(ctx, "store.lock_accounts")
	err := g.lockAccounts(lockCtx, tx)
	telemetry.Fail(span, err)
	span.End()
	if err != nil {
		return err
	}
	if err := g.applyEvents(ctx, tx); err != nil {
		return err
	}
	if err := tx.commitTraced(ctx); err != nil {
		return fmt.Errorf("store: apply and commit: %w", err)
	}
	return nil
}

// lookAheadTake takes the pending rows of up to $2 of the oldest
// unprocessed events from the look's start ($3) that no transaction holds
// and that never failed (a failed one waits for its job's retry), leaving
// the events $1, walking pending_events' created_at index. It deletes the
// rows it locked by their ids, as a list (= ANY of an array), not as a
// join (IN): a generic plan, which a connection's prepared statement turns
// to after five executions, joined them to every pending row by hashing,
// reading the whole backlog at every group. The group then claims their
// events as it claims its jobs' (claimEvents), in a second round trip: one
// statement taking the pending rows and claiming their events could not
// name their days, so Postgres would plan it over every partition the
// retention keeps, at every group (4.4 ms with 65 partitions, 0.7 ms with
// 10).
const lookAheadTake = `DELETE FROM pending_events WHERE id = ANY(ARRAY(SELECT id FROM pending_events
	WHERE NOT failed AND created_at >= $3 AND NOT (id = ANY($1::uuid[]))
	ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED))
RETURNING id`

// presentEvents reads which of the events $1 (lying in the days $2 to $3,
// idSpan) have a row, as claimEvents finds them.
const presentEvents = `SELECT e.id FROM webhook_events AS e WHERE e.id = ANY($1::uuid[]) AND e.id BETWEEN $2 AND $3`

// claim begins the transaction and, in the same round trip, claims the
// jobs' events first (waiting for a row another group holds), then, looking
// ahead, takes the pending rows of others (never waiting), so that groups
// never wait on each other in a cycle; it reads which of the jobs' events
// exist at all. A second round trip claims the events it took.
func (g *group) claim(ctx context.Context, conn *pgx.Conn) error {
	ctx, span := startStep(ctx, "store.claim")
	defer span.End()
	lo, hi := idSpan(g.ids)
	var taken []string
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	// The claims must look their events up by id, and the look must walk
	// pending_events' created_at index from its start and stop at the
	// limit. Statistics taken while a table was small (a new database, a
	// quiet day before a burst, today's partition early on) make the
	// planner scan whole tables instead, for every group; these settings
	// last until the group's commit.
	b.Queue("SET LOCAL enable_seqscan = off")
	b.Queue("SET LOCAL enable_bitmapscan = off")
	b.Queue(unpendEvents, g.ids)
	b.Queue(claimEvents, g.ids, g.now, lo, hi).Query(scanClaimed(g.now, g.add(false)))
	if g.look != nil {
		b.Queue(lookAheadTake, slices.Concat(g.ids, g.look.leave), g.a.opts.Ahead, g.look.from).
			Query(scanIDs(&taken))
	}
	b.Queue(presentEvents, g.ids, lo, hi).Query(scanIDs(&g.present))
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		telemetry.Fail(span, err)
		return fmt.Errorf("store: claim events: %w", err)
	}
	if err := g.claimTaken(ctx, conn, taken); err != nil {
		telemetry.Fail(span, err)
		return fmt.Errorf("store: claim events ahead: %w", err)
	}
	return nil
}

// claimTaken claims the events whose pending rows the look took, as the
// jobs' are claimed: within their days.
func (g *group) claimTaken(ctx context.Context, conn *pgx.Conn, taken []string) error {
	if len(taken) == 0 {
		return nil
	}
	lo, hi := idSpan(taken)
	rows, err := conn.Query(ctx, claimEvents, taken, g.now, lo, hi)
	if err != nil {
		return err
	}
	defer rows.Close()
	return scanClaimed(g.now, g.add(true))(rows)
}

// scanIDs reads a column of ids into ids.
func scanIDs(ids *[]string) func(pgx.Rows) error {
	return func(rows pgx.Rows) (err error) {
		*ids, err = pgx.AppendRows(*ids, rows, pgx.RowTo[string])
		return err
	}
}

// add returns what keeps a claimed event, ahead of its job or not.
func (g *group) add(ahead bool) func(WebhookEvent) {
	return func(e WebhookEvent) { g.events = append(g.events, member{WebhookEvent: e, ahead: ahead}) }
}

// lockAccounts puts the events in the order every group locks in (by
// connected account, then created_at and id), so that two groups never
// wait on each other; then it locks their accounts in one round trip,
// created first if new when the Applier has AccountOf, for the handlers
// to read.
func (g *group) lockAccounts(ctx context.Context, tx *Tx) error {
	for i := range g.events {
		g.events[i].account = g.a.accountOf(g.events[i].WebhookEvent)
	}
	slices.SortFunc(g.events, func(x, y member) int {
		return cmp.Or(cmp.Compare(x.account, y.account),
			cmp.Compare(x.CreatedAt.UnixNano(), y.CreatedAt.UnixNano()), cmp.Compare(x.ID, y.ID))
	})
	var accounts []string
	for _, m := range g.events {
		if m.account != "" && !slices.Contains(accounts, m.account) {
			accounts = append(accounts, m.account)
		}
	}
	if len(accounts) == 0 {
		return nil
	}
	return tx.lockAccounts(ctx, accounts, g.a.opts.AccountOf != nil)
}

// applyEvents runs each event's handler in tx, in order, until one fails
// or the deadline passes, and notes the event that failed.
func (g *group) applyEvents(ctx context.Context, tx *Tx) error {
	for i := range g.events {
		if err := ctx.Err(); err != nil {
			return err
		}
		applyCtx, span := startApply(ctx, g.events[i].WebhookEvent)
		err := safeApply(applyCtx, tx, g.events[i].WebhookEvent, g.a.apply)
		if err == nil {
			// A handler that returns after the deadline has passed is the
			// one the group waited on, whatever it returns.
			err = ctx.Err()
		}
		telemetry.Fail(span, err)
		span.End()
		if err != nil {
			g.failed = &g.events[i]
			return err
		}
	}
	return nil
}

// answer tells each job of the committed group what became of its event:
// applied by this group (the first of two jobs of one event; the second
// finds it processed), applied before (its row is there but was not
// claimed), or gone.
func (g *group) answer() {
	claimed := make(map[string]WebhookEvent, len(g.jobs))
	for _, m := range g.events {
		if !m.ahead {
			claimed[m.ID] = m.WebhookEvent
		}
	}
	answered := make(map[string]bool, len(g.jobs))
	for _, j := range g.jobs {
		e, ok := claimed[j.webhookID]
		switch {
		case ok && !answered[j.webhookID]:
			j.outcome, j.event = Applied, e
			answered[j.webhookID] = true
		case ok:
			j.outcome, j.event = AlreadyProcessed, e
		case slices.Contains(g.present, j.webhookID):
			j.outcome, j.event = AlreadyProcessed, WebhookEvent{ID: j.webhookID, Processed: true}
		default:
			j.outcome, j.event = Missing, WebhookEvent{ID: j.webhookID}
		}
	}
}

// claimedOwn and claimedAhead count the events claimed for the group's jobs
// and ahead of theirs.
func (g *group) claimedOwn() int { return len(g.events) - g.claimedAhead() }

func (g *group) claimedAhead() int {
	n := 0
	for _, m := range g.events {
		if m.ahead {
			n++
		}
	}
	return n
}

// newest is the latest created_at of the events claimed (zero for none).
func (g *group) newest() time.Time {
	var t time.Time
	for _, m := range g.events {
		if m.CreatedAt.After(t) {
			t = m.CreatedAt
		}
	}
	return t
}
