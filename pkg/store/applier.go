package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidwall/gjson"
)

// Applier is group commit for the worker: the events of jobs running at the
// same moment in one process are applied in one transaction (one claim of
// all their rows, one commit), each job answered after that commit; up to
// Flushers such transactions are in flight at once. With
// Ahead set, each group also claims up to that many other unprocessed
// events, oldest first, skipping rows another transaction holds: in a
// backlog most events are then applied in large groups, and their own jobs
// find them done. If anything in a group fails (a handler's error, or the
// group's deadline), the group is rolled back and each of its jobs' events
// is processed on its own, all at once, each in a transaction with a
// deadline of its own: a group that timed out has spent its deadline, and
// its jobs' contexts theirs. A failure is thus recorded against its own
// event only, and only once that event's handler ran on its own. An event
// that was applied ahead when its group failed (its handler failed, or was
// running when the deadline passed) is not recorded against, is not claimed
// ahead again by this process, and waits for its own job.
type Applier struct {
	store   *Store
	apply   ApplyFunc
	opts    ApplierOptions
	reqs    chan *applyReq
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	mu      sync.Mutex
	skipped map[string]bool // events that failed a group when applied ahead
	// backlog: the last look ahead filled its group, or a job has since
	// found its own event unprocessed; without one, groups do not look.
	backlog bool
	// from is where the next look ahead starts: the newest created_at this
	// process has claimed. Older unprocessed events are left to their own
	// jobs, so that a look does not walk the index entries of every event
	// processed since the last vacuum.
	from time.Time
}

// ApplierOptions configures an Applier.
type ApplierOptions struct {
	// Flushers is how many groups are applied at once (default 1).
	Flushers int
	// MaxJobs is the most jobs' events in one group (default 1).
	MaxJobs int
	// Ahead is how many events without a running job one group may claim
	// besides its jobs' own (0: none).
	Ahead int
	// Timeout bounds each transaction: a group's, and each event's own
	// after its group failed. A job whose group fails may thus wait about
	// twice Timeout for its answer once a flusher has taken it.
	Timeout time.Duration
	// AppliedAhead, if set, is called after the commit for each event a
	// group applied ahead of its job.
	AppliedAhead func(WebhookEvent)
	// AccountOf, if set, names the connected account whose row applying an
	// event reads and writes ("" for none). A group then creates the
	// missing rows of all its events' accounts and locks them all in one
	// round trip, before any handler runs; a handler that asks for an
	// account not named here creates and locks it in a round trip of its
	// own. Unset, a group locks the existing rows of the payloads'
	// top-level "account" up front and creates none.
	AccountOf func(WebhookEvent) string
	// GroupFailed, if set, is told why a group transaction failed (a
	// handler's error, the deadline, the database) and how many jobs'
	// events it held; they are then processed one by one.
	GroupFailed func(err error, jobs int)
}

// maxSkipped bounds the events remembered as failing ahead; past it the
// memory starts again (at worst one more failed group per such event).
const maxSkipped = 10000

type applyReq struct {
	// ctx is the caller's: an attempt of the event on its own runs under
	// its values, with a deadline of its own.
	ctx       context.Context
	webhookID string
	attempt   Attempt
	outcome   Outcome
	event     WebhookEvent
	err       error
	done      chan struct{}
}

// NewApplier starts the flushers that apply events with apply.
func (s *Store) NewApplier(apply ApplyFunc, opts ApplierOptions) *Applier {
	opts.Flushers, opts.MaxJobs = max(opts.Flushers, 1), max(opts.MaxJobs, 1)
	a := &Applier{store: s, apply: apply, opts: opts,
		reqs: make(chan *applyReq), stop: make(chan struct{}), skipped: map[string]bool{}, backlog: true}
	for range opts.Flushers {
		a.wg.Add(1)
		go a.flusher()
	}
	return a
}

// Close stops the flushers after the groups in flight.
func (a *Applier) Close() {
	a.once.Do(func() { close(a.stop) })
	a.wg.Wait()
}

// Process applies one event as ProcessEvent does, possibly together with
// the events of other jobs running at the same time. ctx bounds the wait
// for a flusher (and an attempt once the Applier is closed); once taken,
// the event is answered within the deadlines of Timeout. As from
// ProcessEvent, an error that wraps ErrNotAttempted was not recorded
// against the event.
func (a *Applier) Process(ctx context.Context, webhookID string, attempt Attempt) (Outcome, WebhookEvent, error) {
	r := &applyReq{ctx: ctx, webhookID: webhookID, attempt: attempt, done: make(chan struct{})}
	if a.opts.Ahead > 0 && !a.inBacklog() {
		// No backlog (a look came up short since the last job that found
		// its own event unprocessed): this job's event was most likely
		// applied ahead of it, and one read on its own goroutine answers.
		if a.answerDone(ctx, r) {
			return r.outcome, r.event, nil
		}
	}
	select {
	case a.reqs <- r:
	case <-a.stop:
		return a.store.ProcessEvent(ctx, webhookID, attempt, a.apply)
	case <-ctx.Done():
		return 0, WebhookEvent{}, &notAttempted{err: ctx.Err()}
	}
	<-r.done
	return r.outcome, r.event, r.err
}

func (a *Applier) flusher() {
	defer a.wg.Done()
	for {
		var batch []*applyReq
		select {
		case r := <-a.reqs:
			batch = append(batch, r)
		case <-a.stop:
			return
		}
	fill:
		for len(batch) < a.opts.MaxJobs {
			select {
			case r := <-a.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		a.flush(batch)
	}
}

func (a *Applier) flush(batch []*applyReq) {
	if (len(batch) > 1 || a.opts.Ahead > 0) && a.flushGroup(batch) {
		return
	}
	// Alone, or the group failed: each job's event on its own, all at once,
	// each with a deadline of its own, failures recorded. The job's own
	// context has passed its deadline if the group's has (the group started
	// after the job, with the same Timeout), so only its values are kept.
	var wg sync.WaitGroup
	for _, r := range batch {
		wg.Go(func() {
			defer close(r.done)
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), a.opts.Timeout)
			defer cancel()
			r.outcome, r.event, r.err = a.store.ProcessEvent(ctx, r.webhookID, r.attempt, a.apply)
		})
	}
	wg.Wait()
}

// flushGroup applies the batch as one group within Timeout, and answers its
// jobs if the group committed.
func (a *Applier) flushGroup(batch []*applyReq) bool {
	ctx, cancel := context.WithTimeout(context.Background(), a.opts.Timeout)
	defer cancel()
	ahead, err := a.group(ctx, batch)
	if err != nil {
		if a.opts.GroupFailed != nil {
			a.opts.GroupFailed(err, len(batch))
		}
		return false
	}
	if a.opts.AppliedAhead != nil {
		for _, e := range ahead {
			a.opts.AppliedAhead(e)
		}
	}
	for _, r := range batch {
		close(r.done)
	}
	return true
}

// claimColumns are what a claim returns of each event.
const claimColumns = `id, stripe_event_id, event_type, payload::text, retry_count, received_at, created_at`

// claimSet marks rows processed (rolled back with the group on failure).
const claimSet = `UPDATE webhook_events SET processed = true, processed_at = $2, error = NULL, dead_at = NULL, next_attempt_at = NULL`

// lookAheadClaim takes the oldest unprocessed events from the look's start
// ($4) that no transaction holds and that never failed (a failed one waits
// for its job's retry), walking the (processed, created_at) index.
const lookAheadClaim = claimSet + `
WHERE id IN (SELECT id FROM webhook_events
	WHERE processed = false AND created_at >= $4 AND error IS NULL AND NOT (id = ANY($1::uuid[]))
	ORDER BY processed, created_at LIMIT $3 FOR UPDATE SKIP LOCKED)
AND processed = false
RETURNING ` + claimColumns

// group applies the batch's events, and up to Ahead others, in one
// transaction; any error rolls it all back and is returned. It returns the
// events applied ahead of their jobs.
func (a *Applier) group(ctx context.Context, batch []*applyReq) ([]WebhookEvent, error) {
	sqlDB, err := a.store.db.DB()
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(batch))
	for i, r := range batch {
		ids[i] = r.webhookID
	}
	now := time.Now().UTC()
	var (
		events  []WebhookEvent
		ahead   = map[string]bool{}
		present = map[string]bool{}
	)
	scan := func(isAhead bool) func(pgx.Rows) error {
		return func(rows pgx.Rows) error {
			for rows.Next() {
				e := WebhookEvent{Processed: true, ProcessedAt: &now}
				if err := rows.Scan(&e.ID, &e.StripeEventID, &e.EventType, (*[]byte)(&e.Payload), &e.RetryCount, &e.ReceivedAt, &e.CreatedAt); err != nil {
					return err
				}
				events = append(events, e)
				ahead[e.ID] = isAhead
			}
			return rows.Err()
		}
	}
	var failed string // the event whose handler failed, or ran past the deadline
	look, from, skipped := a.lookAhead()
	err = withConn(ctx, sqlDB, func(conn *pgx.Conn) error {
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		// The jobs' own rows first (waiting for a row another group holds),
		// then others (never waiting), so that groups never wait on each
		// other in a cycle; then which of the jobs' rows exist at all.
		b.Queue(claimSet+` WHERE id = ANY($1::uuid[]) AND NOT processed RETURNING `+claimColumns, ids, now).Query(scan(false))
		if look {
			// The look must walk the (processed, created_at) index from
			// `from` and stop at the limit. Statistics taken while the table
			// was small (a new database, a quiet day before a burst) make
			// the planner scan and sort the whole table instead, for every
			// group; these settings last until the group's commit.
			b.Queue("SET LOCAL enable_seqscan = off")
			b.Queue("SET LOCAL enable_bitmapscan = off")
			b.Queue(lookAheadClaim, slices.Concat(ids, skipped), now, a.opts.Ahead, from).Query(scan(true))
		}
		b.Queue(`SELECT id FROM webhook_events WHERE id = ANY($1::uuid[])`, ids).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					return err
				}
				present[id] = true
			}
			return rows.Err()
		})
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("store: claim events: %w", err)
		}
		if len(events) == 0 {
			_, err := conn.Exec(ctx, "COMMIT")
			return err
		}
		// Lock accounts in one order in every group (by connected account,
		// then event), so that two groups never wait on each other.
		account := make(map[string]string, len(events))
		for _, e := range events {
			if a.opts.AccountOf != nil {
				account[e.ID] = a.opts.AccountOf(e)
			} else {
				account[e.ID] = gjson.GetBytes(e.Payload, "account").Str
			}
		}
		slices.SortFunc(events, func(x, y WebhookEvent) int {
			return cmp.Or(cmp.Compare(account[x.ID], account[y.ID]),
				cmp.Compare(x.CreatedAt.UnixNano(), y.CreatedAt.UnixNano()), cmp.Compare(x.ID, y.ID))
		})
		tx := &Tx{conn: conn, pending: &pgx.Batch{}, accounts: map[string]ConnectedAccount{}}
		// The group's accounts, created if new and locked in one round
		// trip; the handlers read them from here.
		var accounts []string
		for _, e := range events {
			if id := account[e.ID]; id != "" && !slices.Contains(accounts, id) {
				accounts = append(accounts, id)
			}
		}
		if len(accounts) > 0 {
			if err := tx.lockAccounts(ctx, accounts, a.opts.AccountOf != nil); err != nil {
				return err
			}
		}
		for _, e := range events {
			if err := ctx.Err(); err != nil {
				return err
			}
			err := safeApply(ctx, tx, e, a.apply)
			if err == nil {
				// A handler that returns after the deadline has passed is
				// the one the group waited on, whatever it returns.
				err = ctx.Err()
			}
			if err != nil {
				failed = e.ID
				return err
			}
		}
		tx.pending.Queue("COMMIT")
		if err := conn.SendBatch(ctx, tx.pending).Close(); err != nil {
			return fmt.Errorf("store: apply and commit: %w", err)
		}
		tx.committed()
		return nil
	})
	if err != nil {
		if failed != "" && ahead[failed] {
			a.skip(failed)
		}
		return nil, err
	}
	// Each job's event: applied by this group (the first of two jobs of one
	// event), applied before (its row is there but was not claimed), or gone.
	claimed := map[string]WebhookEvent{}
	var appliedAhead []WebhookEvent
	for _, e := range events {
		if ahead[e.ID] {
			appliedAhead = append(appliedAhead, e)
		} else {
			claimed[e.ID] = e
		}
	}
	a.looked(look, len(claimed), len(appliedAhead), events)
	answered := map[string]bool{}
	for _, r := range batch {
		e, ok := claimed[r.webhookID]
		switch {
		case ok && !answered[r.webhookID]:
			r.outcome, r.event = Applied, e
			answered[r.webhookID] = true
		case ok:
			r.outcome, r.event = AlreadyProcessed, e
		case present[r.webhookID]:
			r.outcome, r.event = AlreadyProcessed, WebhookEvent{ID: r.webhookID, Processed: true}
		default:
			r.outcome, r.event = Missing, WebhookEvent{ID: r.webhookID}
		}
	}
	return appliedAhead, nil
}

// answerDone answers r in one read if its event is processed or gone.
func (a *Applier) answerDone(ctx context.Context, r *applyReq) bool {
	sqlDB, err := a.store.db.DB()
	if err != nil {
		return false
	}
	var processed bool
	err = sqlDB.QueryRowContext(ctx, "SELECT processed FROM webhook_events WHERE id = $1", r.webhookID).Scan(&processed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		r.outcome, r.event = Missing, WebhookEvent{ID: r.webhookID}
	case err != nil:
		return false // the group will tell
	case processed:
		r.outcome, r.event = AlreadyProcessed, WebhookEvent{ID: r.webhookID, Processed: true}
	default:
		return false
	}
	return true
}

func (a *Applier) inBacklog() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.backlog
}

func (a *Applier) skip(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.skipped) >= maxSkipped {
		clear(a.skipped)
	}
	a.skipped[id] = true
}

// lookAhead says whether the next group looks for events ahead of their
// jobs, from where, and which events it must leave.
func (a *Applier) lookAhead() (bool, time.Time, []string) {
	if a.opts.Ahead <= 0 {
		return false, time.Time{}, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.backlog {
		return false, time.Time{}, nil
	}
	ids := make([]string, 0, len(a.skipped))
	for id := range a.skipped {
		ids = append(ids, id)
	}
	return true, a.from, ids
}

// looked notes what a committed group found: own of its jobs' events were
// still unprocessed, others came from looking ahead.
func (a *Applier) looked(look bool, own, others int, events []WebhookEvent) {
	if a.opts.Ahead <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case look:
		a.backlog = others == a.opts.Ahead
	case own > 0:
		a.backlog = true
	}
	for _, e := range events {
		if e.CreatedAt.After(a.from) {
			a.from = e.CreatedAt
		}
	}
}
