-- +goose Up
-- Stripe's `created` has one-second resolution. To settle two events of one
-- object in the same second, each object keeps, beside the `created` of the
-- newest event applied to it, that event's data.previous_attributes for the
-- fields kept (NULL, or no entry: it changed none of them, or a resync wrote
-- the object): the state it followed.
ALTER TABLE stripe_connected_accounts
    ADD COLUMN account_event_previous jsonb,
    -- capability name -> its status before the newest event applied to it ("" : none)
    ADD COLUMN capabilities_event_previous jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE stripe_external_accounts ADD COLUMN event_previous jsonb;

-- Accounts a same-second tie the events could not settle asks to resync from
-- Stripe's API (with STRIPE_API_KEY): requested_at is when the first tie asked
-- (the debounce counts from it), tied_at the newest `created` second of the
-- ties; a snapshot taken in a later second settles them and deletes the row.
CREATE TABLE resync_requests (
    stripe_account_id varchar(255) PRIMARY KEY,
    requested_at      timestamp    NOT NULL,
    tied_at           timestamp    NOT NULL
);
CREATE INDEX resync_requests_requested_at_idx ON resync_requests (requested_at);

-- +goose Down
DROP TABLE resync_requests;
ALTER TABLE stripe_external_accounts DROP COLUMN event_previous;
ALTER TABLE stripe_connected_accounts
    DROP COLUMN capabilities_event_previous,
    DROP COLUMN account_event_previous;
