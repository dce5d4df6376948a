-- +goose Up

-- The operator allow-list: organisations (messenger vendors, hospital
-- groups) allowed to connect bridges or federate with the hub. The hub
-- keeps an in-memory copy for its checks and re-reads this table
-- periodically, so a change made by the CLI reaches a running hub.
CREATE TABLE operators (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    contact       TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
    status_reason TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL, -- Unix ms
    updated_at    INTEGER NOT NULL  -- Unix ms
);

-- A Matrix server name belongs to at most one operator: the primary key
-- is what guarantees it, even against two writers racing.
CREATE TABLE operator_servers (
    server_name TEXT PRIMARY KEY,
    operator_id TEXT NOT NULL REFERENCES operators (id)
);
CREATE INDEX operator_servers_by_operator ON operator_servers (operator_id);

-- Revocation is final. The store checks it in its transaction; this
-- trigger also stops a hand-written UPDATE from undoing one.
-- +goose StatementBegin
CREATE TRIGGER operators_revoked_is_final
BEFORE UPDATE OF status ON operators
WHEN OLD.status = 'revoked' AND NEW.status <> 'revoked'
BEGIN
    SELECT RAISE(ABORT, 'operator revoked: revocation is final');
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER operators_revoked_is_final;
DROP TABLE operator_servers;
DROP TABLE operators;
