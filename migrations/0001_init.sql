-- kv schema, version 1. Applied in order at open by rusqlite_migration (PRAGMA user_version).
-- Current contents: one row per live key.
CREATE TABLE kv (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Every committed write, in order. max(seq) is the head; trimming keeps at least the newest row.
CREATE TABLE log (
    seq   INTEGER PRIMARY KEY,
    op    TEXT NOT NULL CHECK (op IN ('put', 'del')),
    key   TEXT NOT NULL,
    value TEXT
);

-- Node metadata: role, history_id, applied_seq (replica). (Earlier versions also wrote
-- primary_addr on replicas; nothing reads or writes it now.)
CREATE TABLE meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;
