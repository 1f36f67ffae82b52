-- +goose Up
-- Bank accounts and cards of Connect accounts: never full numbers, only last4.
CREATE TABLE stripe_external_accounts (
    id                         bigserial    PRIMARY KEY,
    stripe_external_account_id varchar(255) NOT NULL UNIQUE,
    stripe_account_id          varchar(255) NOT NULL,
    object                     varchar(32)  NOT NULL,
    last4                      varchar(4),
    bank_name                  varchar(255),
    brand                      varchar(64),
    currency                   varchar(3),
    status                     varchar(64),
    default_for_currency       boolean      NOT NULL DEFAULT false,
    deleted_at                 timestamp,
    event_created              timestamp,
    created_at                 timestamp    NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    updated_at                 timestamp    NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    CONSTRAINT stripe_external_accounts_object_check CHECK (object IN ('bank_account', 'card'))
);

CREATE INDEX stripe_external_accounts_account_idx ON stripe_external_accounts (stripe_account_id);

-- +goose Down
DROP TABLE stripe_external_accounts;
