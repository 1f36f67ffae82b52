-- +goose Up
-- The W3C traceparent of the delivery that stored the event (its ingest
-- server span, or the reconcile run that found it), so that a job queued
-- for it later, by the sweeper or reconcile, joins the delivery's trace.
-- NULL while tracing is off: such an event costs no more bytes. Added to
-- the partitioned parent, the column reaches every partition; without a
-- default it is a change of the catalog only, with no rewrite and only a
-- brief lock.
ALTER TABLE webhook_events ADD COLUMN IF NOT EXISTS traceparent text;

-- +goose Down
ALTER TABLE webhook_events DROP COLUMN IF EXISTS traceparent;
