-- kv schema, version 3: keys may expire.

-- When a key expires, in milliseconds since the Unix epoch (NULL: never). The primary
-- decides it and logs it with the put; every node hides the key from that moment on, and
-- the primary's sweep deletes the row (logging the delete). A row whose time has passed
-- may stay here until then: `select * from kv where expires_at is null or
-- expires_at > unixepoch('subsec') * 1000` lists the live keys.
ALTER TABLE kv ADD COLUMN expires_at INTEGER;

-- The sweep finds what expired in order of expiry, and only keys with one are indexed.
CREATE INDEX kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL;

-- A put's expiry travels in its log row, and a saved diverged put keeps it.
ALTER TABLE log ADD COLUMN expires_at INTEGER;
ALTER TABLE diverged ADD COLUMN expires_at INTEGER;
