// Package maintenance is the worker's upkeep beside its jobs: the sweeper
// that queues again what Redis lost, the days' partitions, retention,
// dead-set trimming, and the once-per-period runs that carry the sweeper,
// partitions, retention and reconcile.
//
// # Once per period
//
// Every worker replica ticks, but each period's run is claimed in Postgres
// (periodic_runs), so one replica runs it per period ([Periodic]). Each
// run, claim included, has a deadline of 8/10 of its period (the claim
// lasts 9/10): a run that hangs on a stuck backend is cut off and logged
// ("periodic run cut off at its deadline") before the next period, which
// any replica may claim. A run that fails is logged "periodic run failed"
// and simply runs again next period.
//
// # Sweeper
//
// Postgres is the record; a job in Redis is only a pointer. Every
// WEBHOOK_SWEEP_INTERVAL the [Sweeper] looks at each event that is not
// processed, older than WEBHOOK_SWEEP_AFTER, not dead, and not waiting for
// a retry (next_attempt_at, set when an attempt fails, is respected:
// backoff stays backoff). It reads them 25,000 at a time, at most 100,000
// per sweep, and asks Redis in bulk which still have a job: one MGET of the
// jobs' unique keys per page finds those waiting; only if some are not
// waiting does it read the in-progress lists of the pools with a heartbeat
// in the last 30 s, and the retry set. The events still not found are read
// again from Postgres (a job that ran meanwhile left its event processed or
// due later), and only those are queued again, logged ("sweeper queued
// lost events again") and counted in sweeper_lost_total. A sweep over a
// backlog of 100,000 events still queued sends Redis 4 commands.
//
// That covers events stored while Redis was down or hung, jobs lost with
// Redis (a restart without persistence, a failover's last unreplicated
// writes), and the job a killed worker was running, once its pool's
// heartbeat is 30 s old. A job gocraft/work moved back to the queue from
// the retry set or a dead pool holds no unique key, so the sweeper may
// queue a second copy of it; that copy finds its event processed.
//
// # Partitions
//
// webhook_events has a partition a day of the events' Stripe `created`
// (package store). Every hour, once per period, [Partitions] makes those
// of today and the week ahead that are missing: one a day, which locks
// webhook_events for a few milliseconds (after waiting at most a second
// for the transactions before; otherwise the next hour tries again). An
// event of a day without a partition is not refused: an event created
// after the newest day waits in the future partition, which hands it over
// when its day's is made; one created before the oldest stays in the past
// partition.
//
// # Retention
//
// With WEBHOOK_RETENTION above 0, [Retention] runs every 10 minutes, once
// per period like the sweeper. It drops the partition of each day whose
// last instant (by Stripe's `created`) is older than the retention: no
// row-by-row delete, no dead tuples, about a fifth of a second for a day
// of a million events. The events of that day not processed yet (waiting,
// failing or dead) are never dropped: they move to the past partition
// first, keeping their state, and stay until processed. Processed events
// in the past partition are deleted once stored longer ago than the
// retention, 500 at a time. Dropping a day locks webhook_events for a few
// milliseconds, like making one. WEBHOOK_RETENTION must be 0 (keep
// everything: a partition a day accumulates) or at least 72h: Stripe
// redelivers for three days, and a redelivery of an event already deleted
// would be applied again. For the same reason reconcile never reaches back
// past it (package reconcile).
//
// # Dead set
//
// Every replica trims gocraft/work's dead set to its newest 1,000 jobs
// every 30 s ([DeadSetTrimmer]); the event rows keep their error and
// dead_at regardless, and `worker replay --failed` finds them there.
package maintenance
