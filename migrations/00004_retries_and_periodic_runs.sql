-- +goose Up
-- dead_at: the event's job exhausted WEBHOOK_MAX_RETRIES and sits in the dead
-- set; the sweeper leaves it to ops (web UI retry, or `worker replay --failed`).
-- next_attempt_at: when gocraft/work retries a failed job, so the sweeper does
-- not run it early (backoff stays backoff).
ALTER TABLE webhook_events ADD COLUMN dead_at timestamp;
ALTER TABLE webhook_events ADD COLUMN next_attempt_at timestamp;

-- One row per periodic task (sweeper, retention): a replica runs a tick only
-- if it moves last_run_at forward, so several replicas run it once per period.
CREATE TABLE periodic_runs (
    name        varchar(64) PRIMARY KEY,
    last_run_at timestamp   NOT NULL
);

-- +goose Down
DROP TABLE periodic_runs;
ALTER TABLE webhook_events DROP COLUMN next_attempt_at;
ALTER TABLE webhook_events DROP COLUMN dead_at;
