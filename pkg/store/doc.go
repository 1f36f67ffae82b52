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
//     Cursor, replay batches. events_process.go: ProcessEvent and
//     ReplayEvent, the claim statements and their one scan, RecordFailure.
//     events_list.go: the console's listings and overview.
//   - inserter.go: Inserter, the ingest's group commit;
//     inserter_params.go: its parameters' binary encoding.
//   - applier.go: Applier, the worker's group commit; applier_group.go:
//     one group's transaction, step by step; applier_lookahead.go: when a
//     group looks ahead, and from where.
//   - tx.go: Tx, the transaction a handler writes through.
//   - accounts.go: ConnectedAccount and the account's own fields, its
//     lock, reads of accounts; accounts_capabilities.go and
//     accounts_external.go: capabilities and external accounts;
//     accounts_ties.go: same-second ties; accounts_snapshot.go: a
//     resync's snapshot.
//   - resync_requests.go and reconcile_marks.go: the per-account
//     bookkeeping of resync and reconcile.
//   - maintenance.go: periodic claims, retention deletes, the sweeper's
//     scan.
//   - migrate.go, migrate_lock.go, migrate_indexes.go: Migrate.
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
// # Group commit
//
// Both services commit in groups. The Inserter stores the deliveries that
// arrive while a commit is in flight in one INSERT … ON CONFLICT DO NOTHING
// and one commit, and answers each caller after that commit; a batch that
// fails is stored row by row, so that only the row Postgres refuses fails.
// The Applier applies the events of the jobs running at the same moment in
// one transaction: in one round trip it begins, claims the jobs' events
// (lock and processed mark in one UPDATE … RETURNING), and in a backlog up
// to Ahead more, oldest first, skipping rows another transaction holds;
// then it creates and locks every account the group touches in one round
// trip, in account order, so that groups never wait on each other in a
// cycle; runs each handler; and sends the handlers' writes with COMMIT. A
// group that fails is rolled back and each of its jobs' events is then
// processed on its own, so that a failure is recorded against its own event
// only. The worker opens its Store with AsyncCommit: applying is idempotent
// and the event row is the record.
package store
