// Package store is the one boundary to Postgres: the GORM models and every
// named operation the services run on them. The services reach Postgres
// only through it; tests (and the bench) set rows up and inspect them
// through Store.DB.
//
// # Files
//
// One entity per group of files, named after what they hold:
//
//   - store.go: Store, Open and the pool; withConn, which lends a pgx
//     connection of the pool. json.go: JSON, the jsonb column type.
//   - events.go: WebhookEvent; storing a delivery (InsertEvent, the
//     batch statement the Inserter shares), reads by id, EventRef and
//     Cursor, replay batches. eventid.go: EventKey, an event's row id.
//     events_process.go: ProcessEvent and ReplayEvent, the claim
//     statements and their one scan, RecordFailure. events_list.go: the
//     console's listings and overview. partitions.go: the days'
//     partitions, made ahead and expired.
//   - inserter.go: Inserter, the ingest's group commit;
//     inserter_params.go: its parameters' binary encoding.
//   - applier.go: Applier, the worker's group commit; applier_group.go:
//     one group's transaction, step by step; applier_lookahead.go: when a
//     group looks ahead, and from where.
//   - tx.go: Tx, the transaction a handler writes through. trace.go: the
//     spans of applying events.
//   - accounts.go: ConnectedAccount and the account's own fields, its
//     lock, reads of accounts; accounts_capabilities.go and
//     accounts_external.go: capabilities and external accounts;
//     accounts_ties.go: same-second ties; accounts_snapshot.go: a
//     resync's snapshot.
//   - resync_requests.go and reconcile_marks.go: the per-account
//     bookkeeping of resync and reconcile.
//   - maintenance.go: periodic claims, the sweeper's scan.
//   - audit.go: AuditEntry, the web UI's audit log (InsertAudit, and
//     ListAudit for the console's /audit).
//   - migrate.go, migrate_lock.go, migrate_indexes.go: Migrate.
//
// # Where an event lives
//
// webhook_events is partitioned by range of its id, one partition a day of
// the events' Stripe `created` (migration 00011 holds the SQL functions
// that make and drop them). An event's id is not random: EventKey derives
// it from `created` (its first 48 bits, as in a UUIDv7) and a SHA-256 of
// the Stripe event id, so the same event always has the same id, and the
// primary key on id, the partition key, is what deduplicates a delivery,
// in whichever partition, however late it comes (Stripe never changes an
// event's `created`). The id also names the event's partition: every read
// of an event by id, and every claim, reads one partition. Events whose
// day has no partition go to webhook_events_past (before the oldest day,
// and where retention moves the events not yet processed of the days it
// drops) or webhook_events_future (after the newest).
//
// The worker's writes to an event row (processed, processed_at, error,
// retry_count, next_attempt_at, dead_at) touch no indexed column, so they
// are heap-only updates: every question about events not processed yet
// goes to pending_events, one narrow row per such event (created_at,
// failed, next_attempt_at, dead), inserted with the event and deleted in
// the transaction that applies it. The look ahead, the sweeper, the
// console's waiting, failing and dead lists, the overview's counts, replay
// --failed and /health's count of unprocessed events walk it by its
// indexes, and read each event's row by id. Every path that changes an
// event takes its pending row first, then its row, so that two
// transactions never wait on each other in a cycle.
//
// The payload is stored as the application compressed it (pkg/payload: a
// zstd frame with a dictionary of Stripe events); the store's reads give
// it back as delivered, byte for byte.
//
// traceparent (migration 00013) is the W3C traceparent of the span that
// stored the event (the delivery's, or a reconcile run's), NULL while
// tracing is off: the inserts write it, every claim, the sweeper's scan
// and replay's reads return it, so that a job queued at any time joins the
// delivery's trace and a group's span links to it.
//
// # Traces
//
// With tracing on (package telemetry, before Open), pgx's tracer is
// otelpgx: every statement, GORM's included, is a span under the span of
// the operation that sends it, and none is made outside one. The batch
// insert goes to pgconn past pgx's tracer, so its span, INSERT
// webhook_events, is made here. The Inserter's batch and the Applier's
// group each have a span of their own, a child of its first sampled
// delivery or job and linked to all (trace.go, inserter.go); applying an
// event is store.claim, apply <type> and store.commit.
//
// # Reaching the database
//
// Simple reads and writes go through GORM (s.db). pgx, on one connection
// of the pool lent by withConn (which makes sure it goes back with no
// transaction open), serves the hot paths and whatever pipelines
// statements or holds a transaction across round trips: the inserts (one
// batch statement, prepared once per connection, its parameters encoded in
// binary) and their duplicate lookups; the claims, with the read that tells
// an event already processed from one that is gone; the handlers'
// transactions (Tx); the snapshots. Both share one database/sql pool, the
// one Close closes; database/sql itself only holds that pool, and serves
// Migrate, which goose drives.
//
// # One event: ProcessEvent
//
// An event is applied in one transaction, in three pipelined round trips
// for a typical event: BEGIN with the claim (its pending row deleted, its
// row locked and marked processed in one UPDATE … WHERE NOT processed
// RETURNING: a row already processed is not returned, so a second job of
// the event ends there); the
// handler's locking read of its account; the handler's writes with COMMIT.
// A failure rolls the mark back with the writes, and only a failure of the
// handler or its commit, on this event alone, is recorded against it
// (RecordFailure); anything before is ErrNotAttempted. The worker opens
// its Store with AsyncCommit: applying is idempotent and the event row is
// the record, so a crash loses a handler's writes and its processed mark
// together, and the sweeper queues the event again. The ingest's commits
// always wait for the WAL.
//
// # Group commit in the ingest: Inserter
//
// Deliveries that arrive while a commit is in flight are stored together
// by the next one, in one INSERT … SELECT FROM unnest(…) ON CONFLICT (id)
// DO NOTHING RETURNING (which also inserts the new rows' pending rows) and
// one commit, and each caller is
// answered only after that commit (after the AfterCommit hook, which the
// ingest uses to queue the batch's jobs). Under light load a delivery is
// stored alone at once; nothing waits for a batch to fill. A batch whose
// statement fails is stored row by row, so that only the row Postgres
// refuses fails. The batch's eight arrays are encoded in Postgres's binary
// format into a buffer each batch loop keeps (batchParams) and sent with
// the prepared statement (sw_insert_batch_v3) as they are: through pgx's own
// encoding every batch re-grew pgx's buffers from a few hundred bytes, most
// of the ingest's garbage; without it (and with a body of stated length
// read into one buffer of that size) the ingest's CPU per delivery at 32
// clients fell from about 155 µs to about 105 µs.
//
// # Group commit in the worker: Applier
//
// The events of the jobs running at the same moment in one process are
// applied in one transaction, with up to Groups such transactions in
// flight (the worker has two: while one waits on Postgres the next is
// applied; with one process that drained a backlog 1.5 times as fast as
// one at a time). A group:
//
//   - claims, in the round trip that begins it, its jobs' events (waiting
//     for a row another group holds), takes, in a backlog, the pending
//     rows of up to Ahead more unprocessed events, oldest first (… ORDER BY
//     created_at LIMIT n FOR UPDATE SKIP LOCKED: rows another transaction
//     holds are skipped, never waited for), and reads which of its jobs'
//     events exist; a second round trip claims the events whose pending
//     rows it took. Every claim names the whole days its ids lie in
//     (e.id BETWEEN $lo AND $hi, idSpan) and its ids as an index condition
//     (e.id = ANY($1)): the plans are made for each execution, and the
//     days keep the planner to the partitions that hold them, however many
//     the retention keeps (one statement taking the pending rows and
//     claiming their events could not name the days, and was planned over
//     every partition: 0.7 ms of Postgres's CPU a group with 10, 4.4 ms
//     with 65). Ids joined as a list (FROM unnest($1) … WHERE e.id = k.id)
//     were planned, while today's partition's statistics lagged behind its
//     rows, as a scan of the whole day for each group;
//   - creates the connected accounts of all its events if new (with
//     AccountOf) and locks them, in one round trip: INSERT … SELECT FROM
//     unnest(…) ORDER BY … ON CONFLICT DO NOTHING, then SELECT … ORDER BY
//     stripe_account_id FOR UPDATE. Both go in account order, and the
//     events are applied in account order, so that two groups never wait on
//     each other in a cycle (one that meets an account another has just
//     inserted waits for its commit). A handler that asks for an account
//     not locked yet creates and locks it the same way, in one round trip
//     with the writes queued before it. When each new account cost two
//     round trips of its own, make bench's burst (3,000 deliveries over
//     2,000 accounts, most of them new) was processed 0.94 and 1.10 s after
//     its last 200; created up front, 0.23–0.42 s;
//   - runs each event's handler, and sends their writes with COMMIT;
//   - then answers each job: applied, already processed, or missing.
//
// Looking ahead is what makes groups large: a gocraft/work goroutine holds
// one job at a time, so the groups of concurrent jobs stay small (one to
// four events at the worker's default concurrency), and with 32 claimed
// ahead Postgres works in groups of about 33. The jobs of events applied
// ahead find them processed after one read, of the partition of the
// event's day by its name when the day has one: a plain table's plan is
// made once, while a read through webhook_events is planned for each
// execution, at about five times the read's own cost. Events that failed
// before are left to their own job's retry. A group looks while there is a
// backlog: looking stops once a look comes up short and starts again when
// a job finds its own event unprocessed; and a process looks only from the
// newest event it has claimed, so an idle or caught-up worker does no extra
// work, and a look does not walk the index entries of every event processed
// since the last vacuum. A group's transaction turns sequential and bitmap
// scans off (SET LOCAL): statistics taken while a table was small
// otherwise make the planner sort the whole of pending_events for the
// look, or scan a partition for the claims, in every group. The look
// deletes the pending rows it locked by a list of their ids (id =
// ANY(ARRAY(…))), not a join: once a connection's prepared statement
// turned generic (after five executions) and pending_events had
// statistics, the join hashed the rows taken against every pending row,
// and each group read the whole backlog (20,030 rows to take 32 of 20,000).
// The plan tests explain prepared executions, custom and generic.
//
// If anything in a group fails (a handler's error, the group's deadline),
// the group is rolled back and each of its jobs' events is processed on its
// own, all at once, each with a deadline of its own, so a failure is
// recorded against its own event only, once its handler ran on that event
// alone. An event that failed while applied ahead is not recorded against,
// is not claimed ahead again by that process, and waits for its own job.
package store
