-- +goose Up
-- A connected account that deauthorized the platform
-- (account.application.deauthorized) keeps its row with deauthorized_at
-- set; account.application.authorized clears it. authorization_event_created
-- is the Stripe `created` time of the newest of those events applied, so
-- that an older one never undoes a newer one.
ALTER TABLE stripe_connected_accounts
    ADD COLUMN deauthorized_at timestamp,
    ADD COLUMN authorization_event_created timestamp;

-- +goose Down
ALTER TABLE stripe_connected_accounts
    DROP COLUMN authorization_event_created,
    DROP COLUMN deauthorized_at;
