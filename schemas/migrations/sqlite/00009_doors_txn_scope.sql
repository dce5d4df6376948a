-- +goose Up

-- Where each local event entered the hub ("client:<device>",
-- "bridge:<id>", "appservice:<id>"…, see internal/door), so the audit
-- trail names the app that spoke for a practitioner. '' for events from
-- before this column.
ALTER TABLE events ADD COLUMN door TEXT NOT NULL DEFAULT '';

-- The door of an audit entry (covered by its hash when not empty).
ALTER TABLE audit_log ADD COLUMN door TEXT NOT NULL DEFAULT '';

-- Transaction IDs are scoped as the spec says: per device and per request
-- path (the room and event type of a send, the room and target of a
-- redaction), so one txnId reused for another room, type or target is a
-- new request, not a retry.
CREATE TABLE txns_scoped (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    scope     TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
);
INSERT INTO txns_scoped (user_id, device_id, scope, txn_id, event_id)
SELECT t.user_id, t.device_id,
       COALESCE((SELECT 'send/' || e.room_id || '/' || e.type FROM events e
                 WHERE e.event_id = t.event_id AND e.type <> 'm.room.redaction'), ''),
       t.txn_id, t.event_id
FROM txns t;
DROP TABLE txns;
ALTER TABLE txns_scoped RENAME TO txns;

-- +goose Down
CREATE TABLE txns_unscoped (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
INSERT OR IGNORE INTO txns_unscoped (user_id, device_id, txn_id, event_id)
SELECT user_id, device_id, txn_id, event_id FROM txns;
DROP TABLE txns;
ALTER TABLE txns_unscoped RENAME TO txns;
ALTER TABLE audit_log DROP COLUMN door;
ALTER TABLE events DROP COLUMN door;
