-- +goose Up

-- The audit trail: metadata about decisions and accepted events, never
-- message content. Rows form one SHA-256 hash chain in seq order (the
-- encoding is documented in internal/audit); seq is assigned by the hub
-- under the audit advisory lock, gap-free, so it is not a sequence.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    time       TIMESTAMPTZ NOT NULL, -- whole milliseconds
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
    prev_hash  BYTEA NOT NULL,
    hash       BYTEA NOT NULL
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
    anchor_seq  BIGINT NOT NULL,
    anchor_hash BYTEA NOT NULL,
    head_seq    BIGINT NOT NULL,
    head_hash   BYTEA NOT NULL
);
INSERT INTO audit_chain (id, anchor_seq, anchor_hash, head_seq, head_hash)
    VALUES (1, 0, decode(repeat('00', 32), 'hex'), 0, decode(repeat('00', 32), 'hex'));

-- Append-only, enforced by the database too: no update ever, no TRUNCATE,
-- and a delete only of rows the purge has already put behind the anchor.
-- Whoever can drop a trigger can still tamper; the hash chain is what
-- detects that.
-- +goose StatementBegin
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.seq <= (SELECT anchor_seq FROM audit_chain WHERE id = 1) THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit_log: only entries behind the purge anchor may be deleted';
    END IF;
    RAISE EXCEPTION 'audit_log is append-only (%)', TG_OP;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- +goose Down
DROP TABLE audit_chain;
DROP TABLE audit_log;
DROP FUNCTION audit_log_append_only();
