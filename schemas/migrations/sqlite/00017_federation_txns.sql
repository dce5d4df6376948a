-- +goose Up
-- Inbound federation transactions (PUT /_matrix/federation/v1/send/{txnId}),
-- de-duplicated per origin: a transaction seen before is answered with the
-- response it got the first time and is not processed again.
CREATE TABLE federation_txns (
    origin     TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    response   BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
) WITHOUT ROWID;
CREATE INDEX federation_txns_created ON federation_txns (created_at);

-- +goose Down
DROP INDEX federation_txns_created;
DROP TABLE federation_txns;
