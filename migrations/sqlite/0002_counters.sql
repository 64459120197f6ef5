-- Request counters (server.quota): one row per client, counting within its current window.
CREATE TABLE IF NOT EXISTS counters (
    key TEXT NOT NULL PRIMARY KEY,
    window TEXT NOT NULL,
    count INTEGER NOT NULL
);
