-- Jobs: the audit trail of every inference request and the source of truth for async work.
-- The same columns as the SQLite schema (0001 + 0002) in native types: UUID ids (UUIDv7, so they
-- sort by creation time), TIMESTAMPTZ times, and JSON (not JSONB) for input and result because
-- JSON keeps the client's exact text and key order. Counts are BIGINT like SQLite's INTEGER.
-- Migrations are additive: never DROP or rewrite a column that holds data.
CREATE TABLE IF NOT EXISTS jobs (
    id                  UUID        PRIMARY KEY,
    tenant_id           TEXT        NOT NULL,
    request_id          TEXT        NOT NULL,
    mode                TEXT        NOT NULL CHECK (mode IN ('sync', 'async')),
    status              TEXT        NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    model               TEXT        NOT NULL,
    version             TEXT,
    input               JSON,
    result              JSON,
    error_type          TEXT,
    error_message       TEXT,
    attempts            BIGINT      NOT NULL DEFAULT 0,
    max_attempts        BIGINT      NOT NULL DEFAULT 1,
    created_at          TIMESTAMPTZ NOT NULL,
    started_at          TIMESTAMPTZ,
    finished_at         TIMESTAMPTZ,
    timeout_ms          BIGINT,
    idempotency_key     TEXT,
    request_fingerprint TEXT,
    heartbeat_at        TIMESTAMPTZ,
    not_before          TIMESTAMPTZ
);
-- One job per tenant and idempotency key.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_tenant_idempotency_key
    ON jobs (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- GET /jobs: a tenant's jobs newest first.
CREATE INDEX IF NOT EXISTS jobs_tenant_id ON jobs (tenant_id, id);
-- The reconciler's scan of unfinished jobs.
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (status, created_at)
    WHERE status IN ('pending', 'running');
