// Package jobs runs the worker pool's process-webhook jobs: the
// [Processor] of one job, its [RetryPolicy], the [Waker] that ends an idle
// pool's sleep, and the series of applying events ([Metrics]).
//
// # How a job runs
//
// A job carries only ids (webhook_id, event_id, event_type: queue.Job);
// the event is its row in webhook_events. Each run gets a deadline of its
// own, WEBHOOK_JOB_TIMEOUT (SIGTERM stops the pool taking jobs but does
// not cut a running one short), and hands the event to the store's group
// commit, store.Applier. The event is applied in one transaction: its row
// is locked and marked processed in one UPDATE … WHERE NOT processed
// RETURNING, the handler of its type runs (package handler), and the
// transaction commits; a failure rolls the mark back with the handler's
// writes. A row already processed is not returned by that UPDATE, so its
// job ends there: two jobs of one event serialise on the row lock and the
// second finds it processed. An event is thus applied once in effect,
// however often Stripe delivers it or gocraft/work runs its job.
//
// Jobs running at the same moment in one process share that transaction,
// with two such groups in flight per process. In a backlog each group also
// claims up to 32 more unprocessed events, oldest first, skipping rows
// another worker holds; their own jobs, when they run, find them processed
// after one read. If anything in a group fails (a handler's error, the
// group's deadline), the group is rolled back and each of its jobs' events
// is retried at once in a transaction of its own with a fresh deadline, so
// a job may take up to about twice WEBHOOK_JOB_TIMEOUT, and a slow or
// failing event never charges the healthy ones it was grouped with. The
// failed group is logged once with its cause and counted in
// group_failures_total. How groups form, look ahead and lock their
// connected accounts is the store's: see pkg/store's package
// documentation. The worker's commits do not wait for the WAL flush
// (store.Options.AsyncCommit): a crash loses a handler's writes and the
// processed mark together, and the sweeper queues the event again.
//
// Each event applied is logged "event processed" (with ahead_of_job true
// when a group applied it before its job ran) and counted in
// events_processed_total; a job that finds its event processed logs
// "event already processed; nothing to do" at debug level.
//
// # Traces
//
// With tracing on (package telemetry), each run of a job is the span
// "process process-webhook", whose parent is the span its traceparent
// argument names: the delivery's, so that the worker's part joins the
// delivery's trace, whether the ingest queued the job or the sweeper or
// reconcile did later (they queue it with the traceparent stored with the
// event). A job without one (tracing was off, or an older version queued
// it) runs as before, its span the root of a trace. Under it are the
// store's spans: the group's (store.apply_group, a child of its first
// sampled job and linked to every job's span and to the delivery of every
// event it applied, those applied ahead included), its claim, account
// locks, each handler (apply <type>) and its commit, and their statements.
// The outcome is an attribute; a deferral and a scheduled retry are
// events; a failure sets the error status. tracing.go holds them.
//
// # Failures and retries
//
// Only a failure of the event's own handler or commit, run on that event
// alone (a handler's error, a panic, the deadline), is recorded: the row's
// error is set and its retry_count incremented, and gocraft/work retries
// the job after WEBHOOK_RETRY_BASE_DELAY × 2^(fails-1): 1, 2, 4, 8 minutes
// with the defaults. After WEBHOOK_MAX_RETRIES attempts in all the job goes
// to the dead set (its newest 1,000 jobs are kept: see package
// maintenance) and the row records dead_at; the web UI shows it and can
// retry it. The row keeps its error and retry_count whatever becomes of
// the job; a retry or a replay does not reset retry_count. An event that
// fails while applied ahead of its job fails no one else's job, is not
// recorded against (its job has not run), and is not taken ahead again by
// that process.
//
// # Not attempted: deferrals and their cap
//
// A failure before the event's handler ran (no database connection, no
// primary during a failover, the job's deadline passed while it waited,
// its row held by another transaction past the deadline) costs the event
// nothing: the row is left as it was, and the job is put back in
// gocraft/work's retry set without a fail counted (queue.Enqueuer.Defer:
// the same job, its fail count unchanged, its err saying "not attempted:
// …", so the web UI lists it among the retries). It runs again after 1, 2,
// 4, … seconds, at most 30 s apart, for as long as it takes: a database
// outage of any length sends no job to the dead set, and each runs within
// 30 s of the database's return. Each deferral is logged "event not
// attempted; its job is put back without counting an attempt" with
// deferred (how many times) and counted in jobs_deferred_total.
//
// Past 8,640 deferrals (about three days at 30 s, Stripe's own redelivery
// window), or if Redis refuses to take the job back, the run is counted as
// a failed attempt, logged with recorded=false and the row left untouched;
// if that was its last attempt, the job goes to the dead set but the event
// is not marked dead, and the sweeper queues it again.
//
// # Malformed jobs
//
// A job whose arguments name no event (webhook_id missing or not a uuid)
// can be helped by no attempt, and put back it would circle forever. It
// goes to the dead set at once, with one fail and the reason as its error,
// logged "malformed job" and counted in jobs_malformed_total. It never
// reaches the database, so it fails no group.
//
// # Waking an idle pool
//
// A gocraft/work worker that finds the queue empty polls ever less often,
// up to every 5 s, so on its own an idle pool takes a new job seconds after
// it is queued, and a burst into an idle pool waits too. Every enqueue here
// (the ingest's, the sweeper's, reconcile's) goes through
// queue.Enqueuer.EnqueueMany, which announces the jobs on the Redis channel
// <namespace>:wake in the same round trip, and each worker process's
// [Waker] makes its workers fetch at once: an idle pool takes a delivery
// within milliseconds of its 200. gocraft/work stays the carrier of every
// job, with its retries, dead set, reaper and web UI. How the Waker
// subscribes, drains and follows the master is its own documentation; what
// it means in operation:
//
//   - Idle cost: a quiet subscription sends Redis no command, so an idle
//     pool issues what gocraft/work's poll, heartbeat and requeuers issue,
//     and nothing more.
//   - A lost message (the process was not subscribed yet, the subscription
//     is down and reconnecting with a backoff of up to 5 s): the job waits
//     for the next poll, at most 5 s, as without the Waker; a restored
//     subscription wakes the pool once, for what was queued meanwhile. Jobs
//     gocraft/work queues itself (a dead job retried from the web UI, the
//     dead-pool reaper's requeue) are not announced and are taken at the
//     next poll.
//   - Failover with Sentinel: the subscription leaves the old master and
//     subscribes on the new one within about a second of the sentinels'
//     switch, also when the old master hangs rather than dies; a hung Redis
//     never holds SIGTERM.
//   - Retries: gocraft/work's requeuer moves a due retry back to the queue
//     within a second, and the process whose attempt failed (or was put
//     back) wakes the pool 1.1 s after the retry's due time
//     ([Waker.WakeAt]), rather than up to 5 s later.
//
// worker/wake_test.go and waker_test.go measure these against real pools.
package jobs
