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
ALTER TABLE txns ADD COLUMN scope TEXT NOT NULL DEFAULT '';
UPDATE txns t SET scope = 'send/' || e.room_id || '/' || e.type
FROM events e WHERE e.event_id = t.event_id AND e.type <> 'm.room.redaction';
ALTER TABLE txns DROP CONSTRAINT txns_pkey;
ALTER TABLE txns ADD PRIMARY KEY (user_id, device_id, scope, txn_id);

-- +goose Down
ALTER TABLE txns DROP CONSTRAINT txns_pkey;
DELETE FROM txns a USING txns b
WHERE a.user_id = b.user_id AND a.device_id = b.device_id AND a.txn_id = b.txn_id AND a.ctid > b.ctid;
ALTER TABLE txns DROP COLUMN scope;
ALTER TABLE txns ADD PRIMARY KEY (user_id, device_id, txn_id);
ALTER TABLE audit_log DROP COLUMN door;
ALTER TABLE events DROP COLUMN door;
