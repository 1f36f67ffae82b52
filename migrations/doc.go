// Package migrations holds the SQL migrations of the stripe-webhooks schema,
// embedded so that `worker migrate` runs from any directory (a Kubernetes
// init container or Job). They are the only way the schema changes.
//
// Each file is a numbered goose migration with its Up and its Down part.
// `worker migrate` (store.Migrate) applies those pending under a Postgres
// advisory lock, so concurrent runs take turns, and may be killed at any
// moment: the next run rebuilds the indexes an interrupted CREATE INDEX
// CONCURRENTLY or REINDEX CONCURRENTLY left invalid, and a version is
// recorded only while every index of the schema is valid. It sets no
// deadline over the migrations: an index build on a large table takes as
// long as it needs and is logged every 30 s.
//
// When writing one:
//
//   - Build indexes on existing tables with CREATE INDEX CONCURRENTLY, in a
//     migration marked to run outside a transaction, and create with IF NOT
//     EXISTS, so that a run cut off part-way can run it again.
//   - An index of a partitioned table becomes valid only once the migration
//     has attached an index of every partition; the run fails otherwise.
//   - Keep webhook_events' columns and their meanings: the services, the
//     console and the operators' queries read them. A new index on it is
//     an index of every partition: justify it by the query that needs it
//     (pkg/store's doc lists those there are), and add it with CREATE
//     INDEX ON ONLY webhook_events, then CREATE INDEX CONCURRENTLY on each
//     partition and ALTER INDEX … ATTACH PARTITION.
//   - Event state changes by hand must keep pending_events in step: run
//     SELECT sw_sync_pending() after them.
//
// # 00011: the partitioned webhook_events
//
// Migration 00011 moves a populated webhook_events into the partitioned
// table (ids re-keyed to EventKey, payloads kept as text, the unprocessed
// events' pending rows made) in batches of 5,000 rows, each its own
// transaction, while the services already running keep storing into the
// old table; then, holding the old table locked (deliveries wait), it
// copies what came meanwhile, brings the state of the events that were
// unprocessed when copied up to date, and swaps the tables. Killed at any
// point, the next run carries on from the last batch committed (the
// partial switch is one transaction, rolled back whole). Afterwards the
// ingests of the old version answer 503 (their INSERT no longer fits the
// table), so Stripe delivers again to the new ones; jobs queued before
// name ids that no longer exist and end as missing, and the sweeper
// queues their events again under their new ids. It has no Down part:
// payloads are compressed by the application from then on.
//
// How long: `make bench`'s upgrade measure (go run ./ingest/cmd/bench
// -upgrade 1000000 …) moved 1,000,000 rows of 4 KB events in 166 s on two
// cores, while bin/ingest went on storing deliveries from 32 clients
// (357,281 stored meanwhile, the slowest answered in 279 ms, including the
// switch under the lock).
package migrations
