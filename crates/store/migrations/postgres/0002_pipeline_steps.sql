-- Pipelines of models: what each step took ([{"model", "version", "queue_us", "inference_us"},
-- ...]); NULL for any other model. JSON like input and result, for the same reason.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS steps JSON;
