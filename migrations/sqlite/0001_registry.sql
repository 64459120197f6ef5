-- Registered resources (models, shields, vector DBs, ...) as JSON documents.
CREATE TABLE IF NOT EXISTS registry (
    kind TEXT NOT NULL,
    identifier TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (kind, identifier)
);
