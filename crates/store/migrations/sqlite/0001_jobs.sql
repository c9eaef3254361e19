-- Jobs: the audit trail of every inference request and the source of truth for async work.
-- Timestamps are microseconds since the Unix epoch (UTC); JSON columns hold serialised text.
-- Migrations are additive: never DROP or rewrite a column that holds data.
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT    PRIMARY KEY NOT NULL,
    tenant_id     TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    mode          TEXT    NOT NULL CHECK (mode IN ('sync', 'async')),
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    model         TEXT    NOT NULL,
    version       TEXT,
    input         TEXT,
    result        TEXT,
    error_type    TEXT,
    error_message TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER
);
