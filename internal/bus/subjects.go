package bus

// This file is the one place that names every JetStream stream, every
// NATS subject and every JetStream durable consumer the hub uses. Anything that publishes or subscribes must go
// through these constants and helpers so that operators (and ACLs on an
// external NATS cluster) have a single list to reason about.

import (
	"encoding/base32"
	"fmt"
	"hash/fnv"
	"strings"
)

const (
	// StreamEvents is the JetStream stream holding every accepted Matrix event.
	StreamEvents = "EIMIS_EVENTS"

	// eventsPrefix is the subject root of StreamEvents.
	eventsPrefix = "eimis.events."

	// EventsWildcard matches every event subject; it is the stream's only
	// subject filter and the filter used by consumers that want everything.
	EventsWildcard = eventsPrefix + ">"

	// EventPartitions is the number of partitions event subjects are spread
	// over. Partitioning lets later consumers (bridges, appservices) split
	// the stream between workers with plain subject filters while keeping
	// every room inside one partition, so per-room order survives the split.
	// Changing it re-homes rooms, so it is effectively part of the wire format.
	EventPartitions = 16

	// ephemeralPrefix is the root for core-NATS (not persisted) traffic.
	ephemeralPrefix = "eimis.ephemeral."

	// EphemeralWildcard matches every ephemeral subject.
	EphemeralWildcard = ephemeralPrefix + ">"

	// SubjectTyping carries typing notifications between hub instances. It is
	// core NATS on purpose: typing state is short-lived and re-sent by
	// clients, so persisting it would only cost disk and replay noise.
	SubjectTyping = ephemeralPrefix + "typing"
)

// roomTokenEncoding turns arbitrary room IDs into a single NATS subject
// token. Room IDs contain '!', ':' and '.', and '.' would split the token;
// base32hex only emits [0-9a-v], which is safe in any subject position and
// keeps the mapping reversible for debugging.
var roomTokenEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// RoomPartition returns the partition (0..EventPartitions-1) a room's events
// are published under. FNV-1a is stable across processes and releases,
// unlike Go's map hash, which matters because every instance and every
// external consumer must agree on it.
func RoomPartition(roomID string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(roomID))
	return int(h.Sum32() % EventPartitions)
}

// RoomToken returns the NATS-safe subject token for a room ID.
func RoomToken(roomID string) string {
	return strings.ToLower(roomTokenEncoding.EncodeToString([]byte(roomID)))
}

// EventSubject returns the subject an event of the given room is published
// on: eimis.events.<partition>.<roomtoken>.
func EventSubject(roomID string) string {
	return fmt.Sprintf("%s%02d.%s", eventsPrefix, RoomPartition(roomID), RoomToken(roomID))
}

// PartitionWildcard returns the filter matching every room of a partition,
// for consumers that shard the stream across workers.
func PartitionWildcard(partition int) string {
	return fmt.Sprintf("%s%02d.*", eventsPrefix, partition)
}

// RoomIDFromSubject recovers the room ID from an event subject. It exists
// for tooling and for consumers that only have the subject at hand.
func RoomIDFromSubject(subject string) (string, error) {
	rest, ok := strings.CutPrefix(subject, eventsPrefix)
	if !ok {
		return "", fmt.Errorf("bus: %q is not an event subject", subject)
	}
	_, token, ok := strings.Cut(rest, ".")
	if !ok || token == "" {
		return "", fmt.Errorf("bus: %q has no room token", subject)
	}
	raw, err := roomTokenEncoding.DecodeString(strings.ToUpper(token))
	if err != nil {
		return "", fmt.Errorf("bus: decode room token of %q: %w", subject, err)
	}
	return string(raw), nil
}

// EphemeralSubject returns the core-NATS subject for an ephemeral traffic
// kind (e.g. "typing", "receipts"). New kinds should get a constant above
// once they are used in more than one place.
func EphemeralSubject(kind string) string {
	return ephemeralPrefix + kind
}

// isEphemeralSubject reports whether subject is under the ephemeral root.
// Publishing elsewhere over core NATS could land in the JetStream stream
// without de-duplication, so the bus refuses it.
func isEphemeralSubject(subject string) bool {
	rest, ok := strings.CutPrefix(subject, ephemeralPrefix)
	return ok && rest != "" && !strings.ContainsAny(subject, " \t\r\n") &&
		!strings.Contains(subject, "..") && !strings.HasSuffix(subject, ".")
}

// SubjectWake carries "something changed for this user or room" between
// instances for data that is not an event (account data, receipts), so a
// /sync long-poll on any instance wakes. Core NATS: the data itself is in
// the database; a lost wake only delays delivery to the poll's timeout.
var SubjectWake = EphemeralSubject("wake")

// SubjectRevoked carries session revocations (logout) between instances so
// their access-token caches drop the session at once. Core NATS: a lost
// message only delays the revocation to the cache's TTL.
var SubjectRevoked = EphemeralSubject("revoked")

// SubjectBindings carries changes of bindings (an app acting for a
// practitioner, internal/consent) between instances: the instance
// holding a bridge's socket drops a revoked user at once, and every
// instance reloads the consents to appservices. Core NATS: a lost message
// only delays the change to the bridge's recheck and the appservices'
// reload interval.
var SubjectBindings = EphemeralSubject("bindings")

// JetStream durable consumers of StreamEvents. A durable consumer keeps
// its position on the server, so a consumer that was down catches up;
// its name is its identity (renaming one starts it afresh at the
// deliver policy), so the names are part of the wire format. Consumer
// names may hold neither '.' nor NATS wildcards.
const (
	// ConsumerAudit is the audit trail's durable (internal/audit). Every
	// hub instance uses it, so the instances share the work and each
	// event is handled by one of them (and stored once even when
	// redelivered).
	ConsumerAudit = "audit"

	// bridgeConsumerPrefix starts every bridge's durable consumer name.
	bridgeConsumerPrefix = "eimis_bridge_"

	// appserviceConsumerPrefix starts every appservice pusher's durable.
	appserviceConsumerPrefix = "eimis-appservice-"
)

// BridgeConsumerName is the durable consumer of a bridge's event feed
// (bridges/gateway, OpenBridgeFeed). Bridge IDs may contain '.', which
// consumer names may not: base32hex keeps the name reversible and free
// of collisions, as RoomToken does for subjects.
func BridgeConsumerName(bridgeID string) string {
	return bridgeConsumerPrefix + strings.ToLower(roomTokenEncoding.EncodeToString([]byte(bridgeID)))
}

// AppserviceConsumerName is the durable consumer of an application
// service's pusher (bridges/appservice). The ID is folded to the
// characters consumer names allow, and a hash of the real ID keeps two
// IDs that fold alike apart.
func AppserviceConsumerName(asID string) string {
	var b strings.Builder
	for _, c := range asID {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(asID))
	return fmt.Sprintf("%s%s-%08x", appserviceConsumerPrefix, b.String(), h.Sum32())
}

// Outbound federation (federation/sender). Accepted local events are fanned
// out from StreamEvents by one durable consumer into StreamFedOut, one
// subject pair per destination server; each destination then has its own
// durable consumer on StreamFedOut, so a server that is down holds back
// only its own queue. Typing and presence skip JetStream (best-effort)
// and travel on FedOutEphemeralSubject.
const (
	// ConsumerFedFanout is the durable consumer of StreamEvents that
	// turns each accepted local event into per-destination queue entries.
	// Every instance may run it: the instances share the work.
	ConsumerFedFanout = "federation_fanout"

	// StreamFedOut holds the per-destination outbound queues. It is a
	// work-queue stream: an entry is gone once its destination's consumer
	// acknowledged it (the remote server accepted the transaction).
	StreamFedOut = "EIMIS_FEDOUT"

	// KVFedOut is the key-value bucket recording, per destination, the
	// transaction in flight (its ID and entries), so a transaction retried
	// after a restart keeps its ID and content and the receiver's
	// de-duplication by transaction ID holds.
	KVFedOut = "eimis_fedout_txn"

	fedOutPrefix = "eimis.fedout."

	// FedOutWildcard matches every subject of StreamFedOut.
	FedOutWildcard = fedOutPrefix + ">"

	// fedOutConsumerPrefix starts every destination's durable name.
	fedOutConsumerPrefix = "eimis_fedout_"

	// FedOutKindPDU and FedOutKindEDU are the last token of a queue
	// subject.
	FedOutKindPDU = "pdu"
	FedOutKindEDU = "edu"
)

// DestToken is the subject and consumer-name token of a destination server
// name (which holds '.' and ':'); base32hex as for RoomToken.
func DestToken(server string) string {
	return strings.ToLower(roomTokenEncoding.EncodeToString([]byte(server)))
}

// DestFromToken reverses DestToken.
func DestFromToken(token string) (string, error) {
	raw, err := roomTokenEncoding.DecodeString(strings.ToUpper(token))
	if err != nil {
		return "", fmt.Errorf("bus: decode destination token %q: %w", token, err)
	}
	return string(raw), nil
}

// FedOutSubject is the queue subject of one destination and kind
// (FedOutKindPDU or FedOutKindEDU): eimis.fedout.<desttoken>.<kind>.
func FedOutSubject(dest, kind string) string {
	return fedOutPrefix + DestToken(dest) + "." + kind
}

// FedOutDestFilter matches both kinds of one destination's queue.
func FedOutDestFilter(dest string) string {
	return fedOutPrefix + DestToken(dest) + ".*"
}

// FedOutConsumerName is the durable consumer of one destination's queue.
func FedOutConsumerName(dest string) string {
	return fedOutConsumerPrefix + DestToken(dest)
}

// FedOutEphemeralSubject carries best-effort EDUs (typing, presence) for
// one destination over core NATS, to whichever instance runs its queue.
func FedOutEphemeralSubject(dest string) string {
	return ephemeralPrefix + "fedout." + DestToken(dest)
}

// FedOutEphemeralWildcard matches FedOutEphemeralSubject for every
// destination.
var FedOutEphemeralWildcard = ephemeralPrefix + "fedout.*"

// DestFromFedOutSubject recovers the destination of a queue subject or of
// an ephemeral fedout subject.
func DestFromFedOutSubject(subject string) (string, error) {
	rest, ok := strings.CutPrefix(subject, fedOutPrefix)
	if !ok {
		rest, ok = strings.CutPrefix(subject, ephemeralPrefix+"fedout.")
	}
	if !ok {
		return "", fmt.Errorf("bus: %q is not a federation queue subject", subject)
	}
	token, _, _ := strings.Cut(rest, ".")
	return DestFromToken(token)
}
