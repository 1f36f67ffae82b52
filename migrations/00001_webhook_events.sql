-- +goose Up
-- Every delivery Stripe makes, stored once per event id. Postgres is the record;
-- the Redis queue only points at rows here.
CREATE TABLE webhook_events (
    id              uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    stripe_event_id varchar(255) NOT NULL UNIQUE,
    event_type      varchar(100) NOT NULL,
    payload         jsonb        NOT NULL,
    processed       boolean      NOT NULL DEFAULT false,
    processed_at    timestamp,
    error           text,
    retry_count     integer      NOT NULL DEFAULT 0,
    received_at     timestamp    NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    created_at      timestamp    NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);

CREATE INDEX webhook_events_processed_created_at_idx ON webhook_events (processed, created_at);
CREATE INDEX webhook_events_event_type_idx ON webhook_events (event_type);

-- +goose Down
DROP TABLE webhook_events;
