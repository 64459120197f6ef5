-- Registered resources (models, shields, vector DBs, ...) as JSON documents. `json` rather than
-- `jsonb` keeps each body's text, key order included, exactly as the stack wrote it.
CREATE TABLE IF NOT EXISTS llama_stack_registry (
    kind TEXT NOT NULL,
    identifier TEXT NOT NULL,
    body JSON NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, identifier)
);
