package store

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Applier is group commit for the worker: the events of jobs running at the
// same moment in one process are applied in one transaction (one claim of
// all their rows, one commit), and each job is answered after that commit.
// Up to Groups such transactions are in flight at once, each on a goroutine
// of its own that takes the jobs waiting, up to MaxJobs, as its next group.
//
// With Ahead set, each group also claims up to that many other unprocessed
// events, oldest first, skipping rows another transaction holds: in a
// backlog most events are then applied in large groups, and their own jobs
// find them done (lookAhead says when a group looks, and from where).
//
// If anything in a group fails (a handler's error, or the group's
// deadline), the group is rolled back and each of its jobs' events is
// processed on its own, all at once, each in a transaction with a deadline
// of its own: a group that timed out has spent its deadline, and its jobs'
// contexts theirs. A failure is thus recorded against its own event only,
// and only once that event's handler ran on its own.
//
// An event that was applied ahead when its group failed (its handler
// failed, or was running when the deadline passed) is not recorded
// against, is not claimed ahead again by this process, and waits for its
// own job.
type Applier struct {
	store *Store
	apply ApplyFunc
	opts  ApplierOptions
	// accountOf names the connected account of an event: opts.AccountOf,
	// or else EventAccount.
	accountOf func(WebhookEvent) string
	ahead     *lookAhead
	jobs      chan *job
	stop      chan struct{}
	once      sync.Once
	wg        sync.WaitGroup
}

// ApplierOptions configures an Applier.
type ApplierOptions struct {
	// Groups is how many groups are applied at once (default 1).
	Groups int
	// MaxJobs is the most jobs' events in one group (default 1).
	MaxJobs int
	// Ahead is how many events without a running job one group may claim
	// besides its jobs' own (0: none).
	Ahead int
	// Timeout bounds each transaction: a group's, and each event's own
	// after its group failed. A job whose group fails may thus wait about
	// twice Timeout for its answer once a group has taken it.
	Timeout time.Duration
	// AppliedAhead, if set, is called after the commit for each event a
	// group applied ahead of its job, with the group's context (its span).
	AppliedAhead func(context.Context, WebhookEvent)
	// AccountOf, if set, names the connected account whose row applying an
	// event reads and writes ("" for none). A group then creates the
	// missing rows of all its events' accounts and locks them all in one
	// round trip, before any handler runs; a handler that asks for an
	// account not named here creates and locks it in a round trip of its
	// own. Unset, a group locks the existing rows of its events'
	// EventAccount up front and creates none.
	AccountOf func(WebhookEvent) string
	// GroupFailed, if set, is told why a group transaction failed (a
	// handler's error, the deadline, the database) and how many jobs'
	// events it held, with the group's context (its span); they are then
	// processed one by one.
	GroupFailed func(ctx context.Context, err error, jobs int)
}

// job is one caller of Process: its event, and the answer it waits for.
type job struct {
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

// NewApplier starts the goroutines that apply events with apply, in groups.
func (s *Store) NewApplier(apply ApplyFunc, opts ApplierOptions) *Applier {
	opts.Groups, opts.MaxJobs = max(opts.Groups, 1), max(opts.MaxJobs, 1)
	a := &Applier{store: s, apply: apply, opts: opts, accountOf: opts.AccountOf, ahead: newLookAhead(opts.Ahead),
		jobs: make(chan *job), stop: make(chan struct{})}
	if a.accountOf == nil {
		a.accountOf = func(e WebhookEvent) string { return EventAccount(e.Payload) }
	}
	for range opts.Groups {
		a.wg.Add(1)
		go a.runGroups()
	}
	return a
}

// Close stops the goroutines after the groups in flight.
func (a *Applier) Close() {
	a.once.Do(func() { close(a.stop) })
	a.wg.Wait()
}

// Process applies one event as ProcessEvent does, possibly together with
// the events of other jobs running at the same time. ctx bounds the wait
// for a group to take the job (and an attempt once the Applier is closed);
// once taken, the event is answered within the deadlines of Timeout. As
// from ProcessEvent, an error that wraps ErrNotAttempted was not recorded
// against the event.
func (a *Applier) Process(ctx context.Context, webhookID string, attempt Attempt) (Outcome, WebhookEvent, error) {
	j := &job{ctx: ctx, webhookID: webhookID, attempt: attempt, done: make(chan struct{})}
	// No backlog (a look came up short since the last job that found its
	// own event unprocessed): this job's event was most likely applied
	// ahead of it, and one read on its own goroutine answers.
	if a.ahead.quiet() && a.answerDone(ctx, j) {
		return j.outcome, j.event, nil
	}
	select {
	case a.jobs <- j:
	case <-a.stop:
		return a.store.ProcessEvent(ctx, webhookID, attempt, a.apply)
	case <-ctx.Done():
		return 0, WebhookEvent{}, &notAttempted{err: ctx.Err()}
	}
	<-j.done
	return j.outcome, j.event, j.err
}

// answerDone answers j in one read if its event is processed or gone.
func (a *Applier) answerDone(ctx context.Context, j *job) bool {
	var processed, found bool
	err := a.store.withConn(ctx, func(conn *pgx.Conn) error {
		var err error
		processed, found, err = readProcessedAlone(ctx, conn, j.webhookID)
		return err
	})
	switch {
	case err != nil:
		return false // the group will tell
	case !found:
		j.outcome, j.event = Missing, WebhookEvent{ID: j.webhookID}
	case processed:
		j.outcome, j.event = AlreadyProcessed, WebhookEvent{ID: j.webhookID, Processed: true}
	default:
		return false
	}
	return true
}

// runGroups takes the jobs waiting, up to MaxJobs, and applies them as one
// group, again and again until Close.
func (a *Applier) runGroups() {
	defer a.wg.Done()
	for {
		var jobs []*job
		select {
		case j := <-a.jobs:
			jobs = append(jobs, j)
		case <-a.stop:
			return
		}
	more:
		for len(jobs) < a.opts.MaxJobs {
			select {
			case j := <-a.jobs:
				jobs = append(jobs, j)
			default:
				break more
			}
		}
		if (len(jobs) > 1 || a.opts.Ahead > 0) && a.applyGroup(jobs) {
			continue
		}
		a.applyEachAlone(jobs)
	}
}

// applyGroup applies the jobs' events, and up to Ahead others, in one
// transaction within Timeout. If it commits it answers the jobs and
// reports true; if it fails nothing is answered.
func (a *Applier) applyGroup(jobs []*job) bool {
	ctx, cancel := context.WithTimeout(context.Background(), a.opts.Timeout)
	defer cancel()
	ctx, span := startGroupSpan(ctx, jobs)
	defer span.End()
	g := a.newGroup(jobs)
	err := a.store.withConn(ctx, func(conn *pgx.Conn) error { return g.run(ctx, conn) })
	noteGroup(span, g, err)
	if err != nil {
		if g.failed != nil && g.failed.ahead {
			a.ahead.leave(g.failed.ID)
		}
		if a.opts.GroupFailed != nil {
			a.opts.GroupFailed(ctx, err, len(jobs))
		}
		return false
	}
	a.ahead.learn(g.look != nil, g.claimedOwn(), g.claimedAhead(), g.newest())
	g.answer()
	if a.opts.AppliedAhead != nil {
		for _, m := range g.events {
			if m.ahead {
				a.opts.AppliedAhead(ctx, m.WebhookEvent)
			}
		}
	}
	for _, j := range jobs {
		close(j.done)
	}
	return true
}

// applyEachAlone applies each job's event on its own, all at once, each
// with a deadline of its own, failures recorded: the jobs of a group that
// failed, or a job alone. The job's own context has passed its deadline if
// the group's has (the group started after the job, with the same
// Timeout), so only its values are kept.
func (a *Applier) applyEachAlone(jobs []*job) {
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() {
			defer close(j.done)
			ctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), a.opts.Timeout)
			defer cancel()
			j.outcome, j.event, j.err = a.store.ProcessEvent(ctx, j.webhookID, j.attempt, a.apply)
		})
	}
	wg.Wait()
}
