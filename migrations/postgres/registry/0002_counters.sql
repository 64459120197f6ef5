-- Request counters (server.quota): one row per client, counting within its current window.
-- Every replica increments the same row, so they share one budget.
CREATE TABLE IF NOT EXISTS llama_stack_counters (
    key TEXT NOT NULL PRIMARY KEY,
    window_id TEXT NOT NULL,
    count BIGINT NOT NULL
);
