-- kv schema, version 2: histories fork, logs carry a running checksum, diverged writes are kept.

-- The log's running checksum after each row: 8 bytes of SHA-256 over the previous row's
-- checksum, the seq, the op, the key and the value (signed 64-bit as SQLite stores it).
-- Two nodes whose checksums agree at a seq hold the same log up to it. NULL on rows
-- written before version 2.
ALTER TABLE log ADD COLUMN checksum INTEGER;

-- Writes a node held that the history it now follows does not have (an old primary's
-- unreplicated writes after a promotion, a replica's writes of a primary later restored
-- from a backup), saved here before a full resync replaced its contents. kv never reads
-- this table; it is for the operator (`sqlite3 FILE 'select * from diverged'`).
CREATE TABLE diverged (
    history_id TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    op         TEXT NOT NULL CHECK (op IN ('put', 'del')),
    key        TEXT NOT NULL,
    value      TEXT,
    saved_at   TEXT NOT NULL
);

-- meta gains: prev_history_id and fork_seq (the fork of a promoted history) and
-- base_checksum (the log checksum at a replica's snapshot seq, which its log continues).
