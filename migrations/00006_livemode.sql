-- +goose NO TRANSACTION
-- +goose Up
-- Whether the event came from live or test mode (the payload's livemode).
-- Rows stored before this column existed keep NULL: the worker reads the
-- mode from the payload itself, so they need no rewrite of the table. The
-- index is built without blocking the ingest's inserts.
ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS livemode boolean;
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_events_livemode_created_at ON webhook_events (livemode, created_at);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS webhook_events_livemode_created_at;
ALTER TABLE webhook_events DROP COLUMN IF EXISTS livemode;
