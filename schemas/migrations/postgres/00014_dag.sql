-- +goose Up
-- Rooms as a DAG (issue 9). See the SQLite migration of the same number
-- for the meaning of each column.
ALTER TABLE events ADD COLUMN flags INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN state_before BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN state_after BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN state_group BIGINT NOT NULL DEFAULT 0;
ALTER TABLE stream_head ADD COLUMN backfill_pos BIGINT NOT NULL DEFAULT 0;

CREATE TABLE room_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    depth    BIGINT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);
INSERT INTO room_extremities (room_id, event_id, depth)
    SELECT room_id, last_event_id, depth FROM rooms WHERE last_event_id <> '';

CREATE TABLE event_edges (
    prev_event_id TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    PRIMARY KEY (prev_event_id, event_id)
);

CREATE TABLE state_groups (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id    TEXT NOT NULL,
    prev_group BIGINT NOT NULL DEFAULT 0,
    chain      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE state_group_entries (
    group_id  BIGINT NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (group_id, type, state_key)
);

CREATE INDEX events_room_topo ON events (room_id, depth, pos) WHERE flags = 0;

-- +goose Down
DROP INDEX events_room_topo;
DROP TABLE state_group_entries;
DROP TABLE state_groups;
DROP TABLE event_edges;
DROP TABLE room_extremities;
ALTER TABLE stream_head DROP COLUMN backfill_pos;
ALTER TABLE rooms DROP COLUMN state_group;
ALTER TABLE events DROP COLUMN state_after;
ALTER TABLE events DROP COLUMN state_before;
ALTER TABLE events DROP COLUMN flags;
