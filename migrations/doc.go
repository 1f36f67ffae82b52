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
//     console and the operators' queries read them.
package migrations
