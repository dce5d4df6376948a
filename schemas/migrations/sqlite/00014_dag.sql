-- +goose Up
-- Rooms as a DAG (issue 9).
--
-- flags: 1 outlier, 2 soft-failed, 4 rejected (internal/store.EventFlags).
-- Only events with flags = 0 are ever served to clients. Events that are not
-- live (flags <> 0, or backfilled into the past) take negative positions
-- from stream_head.backfill_pos, so no /sync token ever covers them and
-- they have no outbox row.
-- state_before / state_after: the state groups of the room state before and
-- after the event; 0 = unknown (outliers, rejected events, and events stored
-- before this migration).
ALTER TABLE events ADD COLUMN flags INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN state_before INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN state_after INTEGER NOT NULL DEFAULT 0;
-- The group of the room's current state (the resolved state of its forward
-- extremities); 0 until the room server first computes it.
ALTER TABLE rooms ADD COLUMN state_group INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stream_head ADD COLUMN backfill_pos INTEGER NOT NULL DEFAULT 0;

CREATE TABLE room_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    depth    INTEGER NOT NULL,
    PRIMARY KEY (room_id, event_id)
) WITHOUT ROWID;
INSERT INTO room_extremities (room_id, event_id, depth)
    SELECT room_id, last_event_id, depth FROM rooms WHERE last_event_id <> '';

-- Which events reference which as prev_events (events that are in the DAG).
CREATE TABLE event_edges (
    prev_event_id TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    PRIMARY KEY (prev_event_id, event_id)
) WITHOUT ROWID;

-- A state group is a delta against prev_group (0 = a full snapshot);
-- chain counts the deltas since the last snapshot. An entry whose event_id
-- is '' removes the key.
CREATE TABLE state_groups (
    id         INTEGER PRIMARY KEY,
    room_id    TEXT NOT NULL,
    prev_group INTEGER NOT NULL DEFAULT 0,
    chain      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE state_group_entries (
    group_id  INTEGER NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (group_id, type, state_key)
) WITHOUT ROWID;

-- Topological order for /messages: (depth, pos) among servable events.
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
