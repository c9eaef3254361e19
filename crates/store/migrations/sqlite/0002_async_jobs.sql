-- Async jobs: per-job deadline, idempotency, worker heartbeats and retry backoff.
ALTER TABLE jobs ADD COLUMN timeout_ms INTEGER;
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
ALTER TABLE jobs ADD COLUMN request_fingerprint TEXT;
ALTER TABLE jobs ADD COLUMN heartbeat_at INTEGER;
ALTER TABLE jobs ADD COLUMN not_before INTEGER;
-- One job per tenant and idempotency key.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_tenant_idempotency_key
    ON jobs (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- GET /jobs: a tenant's jobs newest first (ids are UUIDv7, so they sort by creation time).
CREATE INDEX IF NOT EXISTS jobs_tenant_id ON jobs (tenant_id, id);
-- The reconciler's scan of unfinished jobs.
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (status, created_at)
    WHERE status IN ('pending', 'running');
