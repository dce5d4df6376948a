-- +goose Up

-- The audit trail: metadata about decisions and accepted events, never
-- message content. Rows form one SHA-256 hash chain in seq order (the
-- encoding is documented in internal/audit); seq is assigned by the hub
-- under the audit lock, gap-free.
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    time       INTEGER NOT NULL, -- Unix milliseconds, UTC
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    room_id    TEXT NOT NULL DEFAULT '',
    target     TEXT NOT NULL DEFAULT '',
    event_id   TEXT NOT NULL DEFAULT '',
    event_type TEXT NOT NULL DEFAULT '',
    decision   TEXT NOT NULL CHECK (decision IN ('allow', 'deny')),
    reason     TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '',
    instance   TEXT NOT NULL DEFAULT '',
    source     TEXT NOT NULL DEFAULT '',
    prev_hash  BLOB NOT NULL,
    hash       BLOB NOT NULL
);

-- JetStream redelivers: an event from the stream is recorded at most once.
CREATE UNIQUE INDEX audit_log_stream_event ON audit_log (event_id)
    WHERE source = 'stream' AND event_id <> '';
-- Purge and export select by time.
CREATE INDEX audit_log_time ON audit_log (time);

-- One row: where the stored chain starts (the last purged entry, or seq 0
-- and 32 zero bytes) and where it ends (the last appended entry).
CREATE TABLE audit_chain (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    anchor_seq  INTEGER NOT NULL,
    anchor_hash BLOB NOT NULL,
    head_seq    INTEGER NOT NULL,
    head_hash   BLOB NOT NULL
);
INSERT INTO audit_chain (id, anchor_seq, anchor_hash, head_seq, head_hash)
    VALUES (1, 0, zeroblob(32), 0, zeroblob(32));

-- Append-only, enforced by the database too: no update ever, and a delete
-- only of rows the purge has already put behind the anchor. Whoever can
-- drop a trigger can still tamper; the hash chain is what detects that.
-- +goose StatementBegin
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN OLD.seq > (SELECT anchor_seq FROM audit_chain WHERE id = 1)
BEGIN
    SELECT RAISE(ABORT, 'audit_log: only entries behind the purge anchor may be deleted');
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE audit_chain;
DROP TABLE audit_log;
