-- remote::postgres files: one row per file, its bytes in parts of at most `part_bytes` so a
-- read streams part by part and no single value nears bytea's 1 GB limit.
CREATE TABLE llama_stack_files (
    id TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Orders listings among files created in the same second.
    created_at_ns BIGINT NOT NULL,
    expires_at BIGINT,
    owner JSONB
);

CREATE INDEX llama_stack_files_order ON llama_stack_files (created_at_ns, id);
CREATE INDEX llama_stack_files_expiry ON llama_stack_files (expires_at)
    WHERE expires_at IS NOT NULL;

CREATE TABLE llama_stack_file_parts (
    file_id TEXT NOT NULL REFERENCES llama_stack_files (id) ON DELETE CASCADE,
    part INTEGER NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (file_id, part)
);
