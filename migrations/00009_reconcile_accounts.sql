-- +goose Up
-- Where periodic reconcile left each account it reconciles: the platform
-- (stripe_account_id ''), the connected accounts with a row, and those only
-- Stripe's list names (no row in stripe_connected_accounts). A run takes
-- the accounts without a row here first, then the least recently
-- attempted, so that a run cut short is resumed by the next one.
-- attempted_at: when a run last took the account, whatever came of it.
-- reconciled_until: the end of the window of its last successful
-- reconcile (events created before it were listed); the next window starts
-- there, less an overlap. NULL until one succeeds.
CREATE TABLE reconcile_accounts (
    stripe_account_id varchar(255) PRIMARY KEY,
    attempted_at      timestamp    NOT NULL,
    reconciled_until  timestamp
);

-- +goose Down
DROP TABLE reconcile_accounts;
