-- Pipelines of models: what each step took, as JSON text
-- ([{"model", "version", "queue_us", "inference_us"}, ...]); NULL for any other model.
ALTER TABLE jobs ADD COLUMN steps TEXT;
