-- +goose Up

-- Matrix application services (bridges/appservice), one row per
-- registration file. as_token_hash is the SHA-256 of the token the
-- appservice presents to the hub, kept like an access token. hs_token is
-- the token the hub presents to the appservice (transactions, ping): the
-- hub must send it, so it is kept as given (a hash could not be sent).
-- last_txn numbers the transactions pushed to it, so a restart never
-- reuses an ID; lease_owner/lease_until elect the one hub instance that
-- pushes to it.
CREATE TABLE appservices (
    id                TEXT PRIMARY KEY,
    registration      TEXT NOT NULL,
    as_token_hash     BYTEA NOT NULL UNIQUE,
    hs_token          TEXT NOT NULL,
    responsible_idnat TEXT NOT NULL,
    start_pos         BIGINT NOT NULL,
    last_txn          BIGINT NOT NULL DEFAULT 0,
    lease_owner       TEXT NOT NULL DEFAULT '',
    lease_until       TIMESTAMPTZ NOT NULL DEFAULT 'epoch',
    created_at        TIMESTAMPTZ NOT NULL
);

-- Rooms where one of an appservice's users is a member, as the pusher saw
-- them in the event stream: the room's events are pushed while one is
-- joined or invited. pos orders the updates (the newest event wins).
CREATE TABLE appservice_members (
    appservice_id TEXT NOT NULL REFERENCES appservices (id) ON DELETE CASCADE,
    room_id       TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    membership    TEXT NOT NULL,
    pos           BIGINT NOT NULL,
    PRIMARY KEY (appservice_id, room_id, user_id)
);

-- Events to push, in stream order (seq). txn_id is NULL while waiting; a
-- sent row stays a while so a redelivered event is recognised.
CREATE TABLE appservice_queue (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    appservice_id TEXT NOT NULL REFERENCES appservices (id) ON DELETE CASCADE,
    event_id      TEXT NOT NULL,
    txn_id        BIGINT,
    queued_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (appservice_id, event_id)
);
CREATE INDEX appservice_queue_waiting ON appservice_queue (appservice_id, txn_id, seq);
CREATE INDEX appservice_queue_age ON appservice_queue (appservice_id, queued_at);

-- Transactions built and not yet acknowledged: retried with the same ID
-- and body until the appservice answers 2xx.
CREATE TABLE appservice_txns (
    appservice_id TEXT NOT NULL REFERENCES appservices (id) ON DELETE CASCADE,
    txn_id        BIGINT NOT NULL,
    body          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (appservice_id, txn_id)
);

-- +goose Down
DROP TABLE appservice_txns;
DROP TABLE appservice_queue;
DROP TABLE appservice_members;
DROP TABLE appservices;
