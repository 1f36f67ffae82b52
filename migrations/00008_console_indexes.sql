-- +goose NO TRANSACTION
-- +goose Up
-- The web UI's console lists events newest first in (created_at, id) order
-- with keyset paging: all events, those of one type, and those of one
-- connected account. The connected account (the payload's top-level
-- "account") is stored in a column of its own as each event is inserted, so
-- that its index costs an insert no more than any text column's; rows stored
-- before this migration keep NULL. Adding a nullable column rewrites nothing,
-- and the indexes are built without blocking the ingest's inserts.
ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS stripe_account_id varchar(255);
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_events_created_at_id ON webhook_events (created_at, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_events_type_created_at_id ON webhook_events (event_type, created_at, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_events_account_created_at_id ON webhook_events (stripe_account_id, created_at, id);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS webhook_events_account_created_at_id;
DROP INDEX CONCURRENTLY IF EXISTS webhook_events_type_created_at_id;
DROP INDEX CONCURRENTLY IF EXISTS webhook_events_created_at_id;
ALTER TABLE webhook_events DROP COLUMN IF EXISTS stripe_account_id;
