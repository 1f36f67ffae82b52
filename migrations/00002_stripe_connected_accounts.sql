-- +goose Up
-- One row per Connect account. The *_event_created columns hold the Stripe
-- `created` time of the newest event applied to each part, so that an older
-- event delivered late never overwrites a newer one.
CREATE TABLE stripe_connected_accounts (
    id                    bigserial    PRIMARY KEY,
    stripe_account_id     varchar(255) NOT NULL UNIQUE,
    charges_enabled       boolean      NOT NULL DEFAULT false,
    payouts_enabled       boolean      NOT NULL DEFAULT false,
    details_submitted     boolean      NOT NULL DEFAULT false,
    requirements          jsonb        NOT NULL DEFAULT '{}'::jsonb,
    capabilities          jsonb        NOT NULL DEFAULT '{}'::jsonb,
    -- capability name -> Stripe `created` (unix seconds) of the newest event applied to it
    capabilities_event_created jsonb   NOT NULL DEFAULT '{}'::jsonb,
    account_event_created timestamp,
    created_at            timestamp    NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    updated_at            timestamp    NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);

-- +goose Down
DROP TABLE stripe_connected_accounts;
