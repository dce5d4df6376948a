-- +goose Up
-- Inbound federation transactions, de-duplicated per origin (see the SQLite
-- migration of the same number).
CREATE TABLE federation_txns (
    origin     TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    response   BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX federation_txns_created ON federation_txns (created_at);

-- +goose Down
DROP INDEX federation_txns_created;
DROP TABLE federation_txns;
