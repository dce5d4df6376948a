-- +goose Up

-- The operator allow-list: organisations (messenger vendors, hospital
-- groups) allowed to connect bridges or federate with the hub. Every hub
-- instance keeps an in-memory copy for its checks and re-reads this table
-- periodically, so a change made by the CLI or another instance reaches
-- them all.
CREATE TABLE operators (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    contact       TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
    status_reason TEXT NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- A Matrix server name belongs to at most one operator: the primary key
-- is what guarantees it, even against two instances racing.
CREATE TABLE operator_servers (
    server_name TEXT PRIMARY KEY,
    operator_id TEXT NOT NULL REFERENCES operators (id)
);
CREATE INDEX operator_servers_by_operator ON operator_servers (operator_id);

-- Revocation is final. The store checks it in its transaction; this
-- trigger also stops a hand-written UPDATE from undoing one.
-- +goose StatementBegin
CREATE FUNCTION operators_revoked_is_final() RETURNS trigger AS $$
BEGIN
    IF OLD.status = 'revoked' AND NEW.status <> 'revoked' THEN
        RAISE EXCEPTION 'operator %: revocation is final', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

CREATE TRIGGER operators_revoked_is_final
BEFORE UPDATE OF status ON operators
FOR EACH ROW EXECUTE FUNCTION operators_revoked_is_final();

-- +goose Down
DROP TRIGGER operators_revoked_is_final ON operators;
DROP FUNCTION operators_revoked_is_final();
DROP TABLE operator_servers;
DROP TABLE operators;
