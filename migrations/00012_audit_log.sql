-- +goose Up
-- Every change made through the web UI (`worker webui`): a console replay,
-- a retry or delete in the job UI, any other changing request an operator
-- sent. One row per request, written after the action, whatever its
-- outcome: who (username and the role they acted in), what (action, the
-- request's method and path), on which events and jobs, the answer's HTTP
-- status, the error if it failed, and a short detail (a replay's result,
-- how many dead jobs a "retry all" found). Nothing in it is secret or a
-- payload. Kept until deleted by hand.
CREATE TABLE audit_log (
    id               bigint    GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at               timestamp NOT NULL DEFAULT now(),
    username         text      NOT NULL,
    role             text      NOT NULL,
    action           text      NOT NULL,
    method           text      NOT NULL,
    path             text      NOT NULL,
    stripe_event_ids text[]    NOT NULL DEFAULT '{}',
    job_ids          text[]    NOT NULL DEFAULT '{}',
    detail           text      NOT NULL DEFAULT '',
    status           integer   NOT NULL,
    error            text
);
-- The console's /audit lists newest first (by id, the primary key),
-- filtered by user, by action, or both (the user's index, the action
-- filtered on its rows), a page at a time by keyset.
CREATE INDEX audit_log_username_id_idx ON audit_log (username, id);
CREATE INDEX audit_log_action_id_idx ON audit_log (action, id);

-- +goose Down
DROP TABLE audit_log;
