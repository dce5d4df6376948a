// Package stateres resolves the state of a Matrix room whose event graph has
// forked: given the states after several events (the prev_events of a new
// event, or a room's forward extremities), it computes the one state that
// every conforming server computes from the same input.
//
// # Why it exists
//
// A room shared with other servers is a DAG, not a line. Two servers that
// disagree about the state at a merge disagree about who is in the room and
// who may speak, so the algorithm must be the spec's to the letter. No Go
// library served to this project implements it (gomatrixserverlib is not
// available and Dendrite is AGPL), so it is written here from the Matrix
// specification: "Room State Resolution" in the Server-Server API and the
// "State resolution" section of the room version pages. The authorisation
// rules themselves are never reimplemented: every check goes through
// mautrix-go's federation/eventauth.
//
// # Versions
//
// Room versions 10 and 11 use state resolution v2. Room version 12 uses its
// revision (MSC4297, sometimes called v2.1):
//
//   - the full conflicted set also holds the conflicted state subgraph: every
//     event on an auth_events path between two conflicted events;
//   - the first pass of iterative auth checks (the power events) starts from
//     an empty state instead of the unconflicted state map, so each event is
//     checked against its own auth events where the partial state has no
//     entry.
//
// Room version 12 also changes what the algorithm reads (MSC4289, MSC4291):
// the room ID is the create event's ID with a '!' sigil, the create event is
// never in auth_events (it is found through the room ID), and the room's
// creators (the create event's sender plus content.additional_creators) have
// an infinite power level that m.room.power_levels cannot name. The reverse
// topological power ordering ranks them above everyone.
//
// # Contract
//
// The caller supplies the state maps (type and state key to event ID) and an
// [EventFetcher] that returns every event of those maps and of their auth
// chains. Resolve walks auth_events itself, in batches, and memoises what it
// fetched for the duration of one call.
//
//   - Every event reachable this way must be known to the fetcher. An unknown
//     event is an error ([MissingEventsError]), never silently skipped: the
//     receipt checks of the Server-Server API require the full auth chain of
//     an event before it is accepted, so a gap is a bug upstream.
//   - Event IDs are trusted: the fetcher is the hub's own store, and the
//     events were hashed and signature-checked on receipt. Resolve does not
//     recompute reference hashes.
//   - Rejected events (pdu.PDU.InternalMeta.Rejected set by the fetcher) must
//     not be values of the input state maps: that is reported as
//     [ErrRejectedInState]. If one turns up in an auth chain (it should not:
//     an event whose auth event was rejected is itself rejected), it still
//     shapes the graph but is never admitted into the resolved state and never
//     used as an auth event, as the spec asks. Mark as rejected only the events
//     that failed the checks against their own auth events (or format,
//     signature, hash); soft-failed events are not rejected and take part
//     normally. Events that failed only against the state before them are
//     handled "as usual" by the spec; this package, like Synapse, never admits
//     an event marked rejected.
//   - A cycle in auth_events (impossible with reference-hash event IDs, but a
//     store can be corrupt) is an error ([ErrAuthCycle]), never a hang. The
//     number of events loaded is bounded by [Resolver.MaxEvents].
//   - Membership events carrying join_authorised_via_users_server need the
//     authorising server's key (rule 5.2.1). Set [Resolver.GetKey] for rooms
//     with restricted joins; without it, meeting such an event in the
//     conflicted set is an error ([ErrNoKeySource]) rather than a silently
//     wrong state.
//
// # Cost
//
// Time and memory are linear in the size of the loaded auth graph plus
// O(c log c) for the c events of the full conflicted set. No per-event auth
// chain is ever materialised (the memory blow-up homeservers are known for):
// the auth difference and the conflicted subgraph come from reachability
// bitsets propagated once along one topological order of the graph.
//
// # Readings of the spec
//
// Where the text allows two readings, this package follows Synapse:
//
//   - The "full auth chain" of a state set includes the state set's own
//     events. The text's auth chain of an event excludes the event, but
//     Synapse counts it (its chain cover index and its fallback walk both
//     start from the state events), so an unconflicted event is never part
//     of the auth difference. The two readings give different states: an
//     unconflicted event let into the full conflicted set can join the power
//     events' sort and reorder it, and in room version 12 an unconflicted
//     power levels event would land on the mainline. The tests pin this
//     reading.
//   - The reverse topological power ordering uses the auth_events edges
//     between events of the set being sorted (the induced subgraph).
//   - A sender's power level for that ordering is read from the
//     m.room.power_levels event among the event's own auth_events (users,
//     then users_default, then 0); without one, the room creator has 100 in
//     versions 10 and 11 (content.creator in version 10, the create event's
//     sender in 11).
package stateres
