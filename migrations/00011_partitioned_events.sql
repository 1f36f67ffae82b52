-- +goose NO TRANSACTION
-- +goose Up
-- webhook_events becomes a table partitioned by day of the event's Stripe
-- `created`, and the events not yet processed get a narrow table of their
-- own, pending_events, which every lookup of unprocessed, failing or dead
-- events uses. Why and how: migrations/doc.go and pkg/store/doc.go.
--
-- An event's id is no longer random: sw_event_id derives it from Stripe's
-- `created` (the first 48 bits, milliseconds, as in a UUIDv7) and a hash of
-- the Stripe event id (the other 74 bits). The same event, delivered again
-- or listed by reconcile, has the same id, so the primary key on id (the
-- partition key) deduplicates across partitions, and a job's id names its
-- partition.
--
-- Rows stored before this migration are moved (re-keyed to that id) while
-- the services that were running keep storing into the old table; a short
-- last step, holding the old table locked, copies what came since, makes
-- the new table webhook_events and drops the old one. Killed at any moment,
-- the migration runs again from where it stopped.

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION sw_uuid_floor(at timestamp) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') || '00000000000000000000')::uuid
$$;
-- +goose StatementEnd

-- sw_event_id is EventKey in pkg/store/eventid.go: a `created` before 1970
-- or past 48 bits of milliseconds counts as 0.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION sw_event_id(created bigint, stripe_event_id text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH h AS (SELECT sha256(convert_to(stripe_event_id, 'UTF8')) AS h)
    SELECT (lpad(to_hex(CASE WHEN created > 0 AND created < 281474976710 THEN created * 1000 ELSE 0 END), 12, '0')
        || to_hex(112 | (get_byte(h, 0) & 15))
        || lpad(to_hex(get_byte(h, 1)), 2, '0')
        || to_hex(128 | (get_byte(h, 2) & 63))
        || encode(substring(h FROM 4 FOR 7), 'hex'))::uuid
    FROM h
$$;
-- +goose StatementEnd

CREATE TABLE IF NOT EXISTS webhook_events_next (
    id                uuid         NOT NULL,
    stripe_event_id   varchar(255) NOT NULL,
    event_type        varchar(100) NOT NULL,
    payload           bytea        NOT NULL,
    processed         boolean      NOT NULL DEFAULT false,
    processed_at      timestamp,
    error             text,
    retry_count       integer      NOT NULL DEFAULT 0,
    received_at       timestamp    NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    created_at        timestamp    NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    dead_at           timestamp,
    next_attempt_at   timestamp,
    livemode          boolean,
    stripe_account_id varchar(255),
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

CREATE INDEX IF NOT EXISTS webhook_events_next_stripe_event_id ON webhook_events_next (stripe_event_id);
CREATE INDEX IF NOT EXISTS webhook_events_next_type_id ON webhook_events_next (event_type, id);
CREATE INDEX IF NOT EXISTS webhook_events_next_account_id ON webhook_events_next (stripe_account_id, id);
CREATE INDEX IF NOT EXISTS webhook_events_next_created_at_id ON webhook_events_next (created_at, id);


-- +goose StatementBegin
DO $$
BEGIN
    -- Legacy payloads are JSON text, 4 KB or so: compressed in TOAST as
    -- before. New ones are compressed by the application, and too small
    -- for Postgres to try.
    IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE webhook_events_next ALTER COLUMN payload SET COMPRESSION lz4;
    END IF;
END
$$;
-- +goose StatementEnd

CREATE TABLE IF NOT EXISTS pending_events (
    id              uuid      PRIMARY KEY,
    created_at      timestamp NOT NULL,
    failed          boolean   NOT NULL DEFAULT false,
    next_attempt_at timestamp,
    dead            boolean   NOT NULL DEFAULT false
) WITH (fillfactor = 90, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000);

CREATE INDEX IF NOT EXISTS pending_events_created_at ON pending_events (created_at);

-- sw_uuid_day is the UTC day of the instant an id (or a bound) begins with.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION sw_uuid_day(id uuid) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (to_timestamp(('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::bigint / 1000.0) AT TIME ZONE 'utc')::date
$$;
-- +goose StatementEnd

-- sw_partition_bound is a partition's lower (or upper) bound; NULL for
-- MINVALUE (MAXVALUE).
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION sw_partition_bound(part regclass, upper boolean) RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT substring(pg_get_expr(c.relpartbound, c.oid)
        FROM CASE WHEN upper THEN 'TO \(''([0-9a-f-]{36})''\)' ELSE 'FROM \(''([0-9a-f-]{36})''\)' END)::uuid
    FROM pg_class c WHERE c.oid = part
$$;
-- +goose StatementEnd

-- Partitions: webhook_events_past holds every id before the oldest day's
-- partition, webhook_events_pYYYYMMDD one day each, webhook_events_future
-- every id after the newest day's. Ranges only, no DEFAULT partition, so
-- that a scan in id order reads the partitions one after the other (an
-- Ordered Append: a page of the newest events reads the newest partition
-- only), and every id has a partition.
--
-- Each partition is filled to half its pages (fillfactor 50): a worker's
-- group marks its jobs' events and up to 32 more processed in one
-- transaction, mostly neighbours on the same pages, and each new version must find room
-- on its page for the update to be heap-only (no index touched, a few
-- bytes of WAL). At 85 a third of the updates were; at 50, 95 %. The old
-- versions are pruned once the group commits, so the table ends no larger
-- than at 85, where the updates that did not fit went to new pages.
--
-- sw_make_event_partitions makes the partitions of the days from first to
-- last that have none: those before the oldest day's are taken from the
-- past partition, those after the newest day's from the future partition,
-- each with the rows its source held for it. It returns how many it made.
-- All in the caller's transaction, which holds webhook_events locked
-- (ACCESS EXCLUSIVE: detaching the past or future partition) for the
-- milliseconds it takes, when there is anything to make.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION sw_make_event_partitions(parent regclass, first date, last date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    oldest date; -- the first day with a partition of its own
    ahead  date; -- the first day after the newest day's partition
    n      integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('sw_event_partitions'));
    oldest := sw_uuid_day(sw_partition_bound('webhook_events_past', true));
    ahead := sw_uuid_day(sw_partition_bound('webhook_events_future', false));
    IF first < oldest THEN
        EXECUTE format('ALTER TABLE %s DETACH PARTITION webhook_events_past', parent);
        FOR i IN 0 .. oldest - first - 1 LOOP
            PERFORM sw_new_event_partition(parent, first + i, 'webhook_events_past');
            n := n + 1;
        END LOOP;
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION webhook_events_past FOR VALUES FROM (MINVALUE) TO (%L)',
            parent, sw_uuid_floor(first::timestamp));
    END IF;
    IF last >= ahead THEN
        EXECUTE format('ALTER TABLE %s DETACH PARTITION webhook_events_future', parent);
        FOR i IN 0 .. last - ahead LOOP
            PERFORM sw_new_event_partition(parent, ahead + i, 'webhook_events_future');
            n := n + 1;
        END LOOP;
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION webhook_events_future FOR VALUES FROM (%L) TO (MAXVALUE)',
            parent, sw_uuid_floor((last + 1)::timestamp));
    END IF;
    RETURN n;
END
$$;
-- +goose StatementEnd

-- sw_new_event_partition makes the partition of day d, and moves into it
-- the rows of d that source (the detached past or future partition) held.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION sw_new_event_partition(parent regclass, d date, source text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'webhook_events_p' || to_char(d, 'YYYYMMDD');
    lo   uuid := sw_uuid_floor(d::timestamp);
    hi   uuid := sw_uuid_floor((d + 1)::timestamp);
BEGIN
    EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 50)', part, parent, lo, hi);
    EXECUTE format('WITH moved AS (DELETE FROM %I WHERE id >= %L AND id < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
        source, lo, hi, part);
END
$$;
-- +goose StatementEnd

-- sw_expire_event_partition drops the partition of day, the oldest, after
-- moving its events not processed yet (found through pending_events) into
-- the past partition, which then reaches to the end of day; it returns how
-- many it moved. In the caller's transaction, which holds webhook_events
-- locked for the milliseconds it takes.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION sw_expire_event_partition(parent regclass, day date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'webhook_events_p' || to_char(day, 'YYYYMMDD');
    lo   uuid := sw_uuid_floor(day::timestamp);
    hi   uuid := sw_uuid_floor((day + 1)::timestamp);
    kept bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('sw_event_partitions'));
    IF sw_partition_bound('webhook_events_past', true) IS DISTINCT FROM lo THEN
        RAISE EXCEPTION 'partition % is not the oldest day''s', part;
    END IF;
    EXECUTE format('ALTER TABLE %s DETACH PARTITION %I', parent, part);
    EXECUTE format('ALTER TABLE %s DETACH PARTITION webhook_events_past', parent);
    EXECUTE format('INSERT INTO webhook_events_past SELECT e.* FROM pending_events p JOIN %I e ON e.id = p.id
        WHERE p.id >= %L AND p.id < %L AND NOT e.processed', part, lo, hi);
    GET DIAGNOSTICS kept = ROW_COUNT;
    EXECUTE format('DROP TABLE %I', part);
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION webhook_events_past FOR VALUES FROM (MINVALUE) TO (%L)', parent, hi);
    RETURN kept;
END
$$;
-- +goose StatementEnd

-- sw_legacy_created is a stored payload's `created`, as EventID reads it:
-- 0 when it is not a number, or out of sw_event_id's range.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION sw_legacy_created(payload jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(payload->'created') = 'number'
            AND (payload->>'created')::numeric >= 1 AND (payload->>'created')::numeric < 281474976710
        THEN trunc((payload->>'created')::numeric)::bigint ELSE 0 END
$$;
-- +goose StatementEnd

-- Where the move of the rows stored before this migration stands.
CREATE TABLE IF NOT EXISTS sw_events_move (
    one        boolean   PRIMARY KEY DEFAULT true CHECK (one),
    created_at timestamp NOT NULL,
    id         uuid      NOT NULL
);

-- sw_events_legacy is the old table while it is not partitioned.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION sw_events_legacy() RETURNS regclass
LANGUAGE sql STABLE AS $$
    SELECT c.oid::regclass FROM pg_class c
    WHERE c.relname = 'webhook_events' AND c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace
$$;
-- +goose StatementEnd

-- sw_copy_legacy copies rows of the old table, in created_at, id order from
-- the last one copied, re-keyed, each row once (ON CONFLICT): a batch at a
-- time, limit rows in all (0: all); unprocessed ones get their pending row.
-- It returns how many it read.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION sw_copy_legacy(batch integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    after_at timestamp;
    after_id uuid;
    n integer;
BEGIN
    SELECT created_at, id INTO after_at, after_id FROM sw_events_move;
    WITH batch AS (
        SELECT * FROM webhook_events o
        WHERE (o.created_at, o.id) > (coalesce(after_at, '-infinity'), coalesce(after_id, '00000000-0000-0000-0000-000000000000'))
        ORDER BY o.created_at, o.id LIMIT batch
    ), keyed AS (
        SELECT sw_event_id(sw_legacy_created(o.payload), o.stripe_event_id) AS new_id, o.*
        FROM batch o
    ), copied AS (
        INSERT INTO webhook_events_next (id, stripe_event_id, event_type, payload, processed, processed_at, error,
            retry_count, received_at, created_at, dead_at, next_attempt_at, livemode, stripe_account_id)
        SELECT new_id, stripe_event_id, event_type, convert_to(payload::text, 'UTF8'), processed, processed_at, error,
            retry_count, received_at, created_at, dead_at, next_attempt_at, livemode, stripe_account_id
        FROM keyed
        ON CONFLICT (id) DO NOTHING
        RETURNING id, created_at, processed, error, next_attempt_at, dead_at
    ), pending AS (
        INSERT INTO pending_events (id, created_at, failed, next_attempt_at, dead)
        SELECT id, created_at, error IS NOT NULL, next_attempt_at, dead_at IS NOT NULL FROM copied WHERE NOT processed
        ON CONFLICT (id) DO NOTHING
    ), last AS (
        SELECT created_at, id FROM batch ORDER BY created_at DESC, id DESC LIMIT 1
    ), moved AS (
        INSERT INTO sw_events_move (created_at, id) SELECT created_at, id FROM last
        ON CONFLICT (one) DO UPDATE SET created_at = excluded.created_at, id = excluded.id
    )
    SELECT count(*) INTO n FROM batch;
    RETURN n;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $$
DECLARE
    first_day date;
BEGIN
    IF sw_events_legacy() IS NULL THEN
        RETURN; -- moved already
    END IF;
    -- The partitions of every day the old rows' Stripe `created` falls on
    -- (back to 30 days, Stripe's reach for a reconciled event, before the
    -- oldest row was stored; older ones go to the past partition), and of
    -- the days ahead.
    SELECT least(now() AT TIME ZONE 'utc', greatest(
            min(to_timestamp(nullif(sw_legacy_created(payload), 0)) AT TIME ZONE 'utc'),
            min(created_at) - interval '30 days'))::date
        INTO first_day FROM webhook_events;
    first_day := coalesce(first_day, (now() AT TIME ZONE 'utc')::date);
    IF to_regclass('webhook_events_past') IS NULL THEN
        EXECUTE format('CREATE TABLE webhook_events_past PARTITION OF webhook_events_next
            FOR VALUES FROM (MINVALUE) TO (%L) WITH (fillfactor = 50)', sw_uuid_floor(first_day::timestamp));
        EXECUTE format('CREATE TABLE webhook_events_future PARTITION OF webhook_events_next
            FOR VALUES FROM (%L) TO (MAXVALUE) WITH (fillfactor = 50)', sw_uuid_floor(first_day::timestamp));
    END IF;
    PERFORM sw_make_event_partitions('webhook_events_next', first_day, (now() AT TIME ZONE 'utc')::date + 7);
END
$$;
-- +goose StatementEnd

-- The move, a batch at a time, each batch its own transaction, while the
-- old table still takes deliveries.
-- +goose StatementBegin
CREATE OR REPLACE PROCEDURE sw_move_legacy()
LANGUAGE plpgsql AS $$
BEGIN
    IF sw_events_legacy() IS NULL THEN
        RETURN;
    END IF;
    LOOP
        EXIT WHEN sw_copy_legacy(5000) < 5000;
        COMMIT;
    END LOOP;
    COMMIT;
END
$$;
-- +goose StatementEnd

CALL sw_move_legacy();

-- The switch: with the old table locked (deliveries wait for it), copy what
-- came since the move (rows whose transaction started before the move's
-- last batch may carry an earlier created_at: a minute of margin, each row
-- once), bring the state of the rows that were unprocessed when copied up
-- to date, and make the new table webhook_events.
-- +goose StatementBegin
CREATE OR REPLACE PROCEDURE sw_switch_events()
LANGUAGE plpgsql AS $$
BEGIN
    IF sw_events_legacy() IS NULL THEN
        RETURN;
    END IF;
    SET LOCAL lock_timeout = '10s';
    LOCK TABLE webhook_events IN ACCESS EXCLUSIVE MODE;
    UPDATE sw_events_move SET created_at = created_at - interval '1 minute', id = '00000000-0000-0000-0000-000000000000';
    LOOP
        EXIT WHEN sw_copy_legacy(50000) < 50000;
    END LOOP;
    UPDATE webhook_events_next n SET processed = o.processed, processed_at = o.processed_at, error = o.error,
        retry_count = o.retry_count, next_attempt_at = o.next_attempt_at, dead_at = o.dead_at
    FROM pending_events p, webhook_events o
    WHERE n.id = p.id AND o.stripe_event_id = n.stripe_event_id
        AND (n.processed, n.processed_at, n.error, n.retry_count, n.next_attempt_at, n.dead_at)
            IS DISTINCT FROM (o.processed, o.processed_at, o.error, o.retry_count, o.next_attempt_at, o.dead_at);
    DELETE FROM pending_events p USING webhook_events_next n WHERE n.id = p.id AND n.processed;
    UPDATE pending_events p SET failed = n.error IS NOT NULL, next_attempt_at = n.next_attempt_at, dead = n.dead_at IS NOT NULL
    FROM webhook_events_next n WHERE n.id = p.id;
    ALTER TABLE webhook_events RENAME TO webhook_events_legacy;
    ALTER TABLE webhook_events_next RENAME TO webhook_events;
    DROP TABLE webhook_events_legacy;
    ALTER INDEX webhook_events_next_pkey RENAME TO webhook_events_pkey;
    ALTER INDEX webhook_events_next_stripe_event_id RENAME TO webhook_events_stripe_event_id;
    ALTER INDEX webhook_events_next_type_id RENAME TO webhook_events_type_id;
    ALTER INDEX webhook_events_next_account_id RENAME TO webhook_events_account_id;
    ALTER INDEX webhook_events_next_created_at_id RENAME TO webhook_events_created_at_id;
    DROP TABLE sw_events_move;
END
$$;
-- +goose StatementEnd

CALL sw_switch_events();

DROP PROCEDURE IF EXISTS sw_switch_events();
DROP PROCEDURE IF EXISTS sw_move_legacy();
DROP FUNCTION IF EXISTS sw_copy_legacy(integer);
DROP FUNCTION IF EXISTS sw_events_legacy();
DROP FUNCTION IF EXISTS sw_legacy_created(jsonb);
DROP TABLE IF EXISTS sw_events_move;
-- sw_sync_pending makes pending_events agree with webhook_events again
-- after the events' state was changed by hand: a row for each unprocessed
-- event, with its failure state, and none for the others. It reads the
-- whole table.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION sw_sync_pending() RETURNS void
LANGUAGE sql AS $$
    DELETE FROM pending_events p
    WHERE NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.id = p.id AND NOT e.processed);
    INSERT INTO pending_events (id, created_at, failed, next_attempt_at, dead)
    SELECT id, created_at, error IS NOT NULL, next_attempt_at, dead_at IS NOT NULL
    FROM webhook_events WHERE NOT processed
    ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, failed = excluded.failed,
        next_attempt_at = excluded.next_attempt_at, dead = excluded.dead
    WHERE (pending_events.created_at, pending_events.failed, pending_events.next_attempt_at, pending_events.dead)
        IS DISTINCT FROM (excluded.created_at, excluded.failed, excluded.next_attempt_at, excluded.dead);
$$;
-- +goose StatementEnd

ANALYZE webhook_events;
ANALYZE pending_events;

-- +goose Down
-- +goose StatementBegin
DO $$
BEGIN
    RAISE EXCEPTION 'migration 00011 (partitioned webhook_events) cannot be undone: payloads are compressed by the application; restore a backup taken before it';
END
$$;
-- +goose StatementEnd
