package inbound

import (
	"errors"
	"maps"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/rooms"
	"github.com/eimis-hub/eimis/internal/store"
)

const (
	hubA = "a.test"
	hubB = "b.test"
)

var (
	alice = id.UserID("@alice:a.test")
	bob   = id.UserID("@bob:b.test")
)

func msg(body string) map[string]string { return map[string]string{"msgtype": "m.text", "body": body} }

func sameState(t *testing.T, what string, room id.RoomID, a, b *node) {
	t.Helper()
	sa, sb := a.state(t, room), b.state(t, room)
	if !maps.Equal(sa, sb) {
		t.Fatalf("%s: current state differs\n%s: %v\n%s: %v", what, a.name, sa, b.name, sb)
	}
}

// TestTwoServers is the heart of the room side: two room servers with
// their own stores and keys, joined by the in-memory transport. A user of
// B joins A's room, they chat both ways, race state changes and converge,
// B's user invites A's user to a room of B, and users leave.
func TestTwoServers(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			nw := newNetwork(t, dialect, hubA, hubB)
			a, b := nw.nodes[hubA], nw.nodes[hubB]
			ctx := t.Context()
			empty := ""

			// Join: bob (b.test) joins alice's public room on a.test.
			room := a.createRoom(t, alice, id.RoomV11, rooms.PresetPublicChat)
			if _, err := b.in.JoinRoom(ctx, bob, string(room), []string{hubA}); err != nil {
				t.Fatalf("remote join: %v", err)
			}
			if got := a.membership(t, room, bob); got != "join" {
				t.Fatalf("on %s bob is %q, want join", hubA, got)
			}
			if got := b.membership(t, room, bob); got != "join" {
				t.Fatalf("on %s bob is %q, want join", hubB, got)
			}
			sameState(t, "after the join", room, a, b)
			// The room's state and auth chain are outliers on B: stored,
			// never served to clients.
			create := b.state(t, room)[store.StateKey{Type: "m.room.create"}]
			if f, ok := b.flags(t, id.EventID(create)); !ok || f != store.FlagOutlier {
				t.Errorf("create event on %s: flags %v, stored %v; want an outlier", hubB, f, ok)
			}
			if b.has(t, id.EventID(create)) {
				t.Error("an outlier is served to clients")
			}
			// Joining again is local now.
			if _, err := b.in.JoinRoom(ctx, bob, string(room), []string{hubA}); !errors.Is(err, ErrLocal) {
				t.Errorf("second join: %v, want ErrLocal", err)
			}

			// Chat both ways.
			m1 := a.send(t, room, alice, "m.room.message", nil, msg("hello from A"))
			nw.flush()
			if !b.has(t, m1) {
				t.Fatal("A's message did not reach B")
			}
			m2 := b.send(t, room, bob, "m.room.message", nil, msg("hello from B"))
			nw.flush()
			if !a.has(t, m2) {
				t.Fatal("B's message did not reach A")
			}
			sameState(t, "after chatting", room, a, b)

			// Concurrent conflicting state: bob gets power 50, then alice
			// and bob set the topic at the same time on their servers.
			a.send(t, room, alice, "m.room.power_levels", &empty, map[string]any{
				"users": map[string]int{string(alice): 100, string(bob): 50}, "state_default": 50, "events_default": 0,
				"ban": 50, "kick": 50, "redact": 50, "invite": 0, "users_default": 0,
				"events": map[string]int{"m.room.power_levels": 100, "m.room.topic": 50},
			})
			nw.flush()
			ta := a.send(t, room, alice, "m.room.topic", &empty, map[string]string{"topic": "from A"})
			tb := b.send(t, room, bob, "m.room.topic", &empty, map[string]string{"topic": "from B"})
			nw.flush()
			sameState(t, "after the topic race", room, a, b)
			topic := a.state(t, room)[store.StateKey{Type: "m.room.topic"}]
			if topic != string(ta) && topic != string(tb) {
				t.Errorf("topic is %s, want one of the racing events", topic)
			}
			// Both servers merge the fork on their next send.
			a.send(t, room, alice, "m.room.message", nil, msg("merge"))
			nw.flush()
			sameState(t, "after the merge", room, a, b)

			// A ban racing a message: alice bans bob on A while bob talks
			// on B. Both end with bob banned; the message is not in A's
			// timeline as accepted after the ban (soft-failed there).
			ban := a.send(t, room, alice, "m.room.member", ptr(string(bob)), map[string]string{"membership": "ban"})
			late := b.send(t, room, bob, "m.room.message", nil, msg("said while being banned"))
			nw.flush()
			sameState(t, "after the ban race", room, a, b)
			if got := a.membership(t, room, bob); got != "ban" {
				t.Errorf("on %s bob is %q, want ban", hubA, got)
			}
			if got := b.membership(t, room, bob); got != "ban" {
				t.Errorf("on %s bob is %q, want ban", hubB, got)
			}
			if f, ok := a.flags(t, late); !ok || f != store.FlagSoftFailed {
				t.Errorf("bob's late message on %s: flags %v, stored %v; want soft-failed", hubA, f, ok)
			}
			_ = ban

			// Invite both ways: bob creates a room on B and invites alice.
			room2 := b.createRoom(t, bob, id.RoomV12, rooms.PresetPrivateChat)
			if _, err := b.in.Invite(ctx, bob, room2, alice, ""); err != nil {
				t.Fatalf("remote invite: %v", err)
			}
			if got := a.membership(t, room2, alice); got != "invite" {
				t.Fatalf("on %s alice is %q in the room she was invited to, want invite", hubA, got)
			}
			if got := b.membership(t, room2, alice); got != "invite" {
				t.Fatalf("on %s alice is %q, want invite", hubB, got)
			}
			// Alice accepts: a remote join through the inviter's server.
			if _, err := a.in.JoinRoom(ctx, alice, string(room2), nil); err != nil {
				t.Fatalf("join after invite: %v", err)
			}
			nw.flush()
			if got := b.membership(t, room2, alice); got != "join" {
				t.Fatalf("on %s alice is %q, want join", hubB, got)
			}
			m3 := a.send(t, room2, alice, "m.room.message", nil, msg("thanks"))
			nw.flush()
			if !b.has(t, m3) {
				t.Fatal("A's message in B's room did not reach B")
			}
			sameState(t, "in the v12 room", room2, a, b)

			// Leave: alice leaves B's room (a local leave, sent on).
			a.send(t, room2, alice, "m.room.member", ptr(string(alice)), map[string]string{"membership": "leave"})
			nw.flush()
			if got := b.membership(t, room2, alice); got != "leave" {
				t.Fatalf("on %s alice is %q after leaving, want leave", hubB, got)
			}
		})
	}
}

func ptr(s string) *string { return &s }

// TestRemoteJoinVersions joins remote rooms of every supported version,
// by room ID and by alias.
func TestRemoteJoinVersions(t *testing.T) {
	nw := newNetwork(t, "sqlite", hubA, hubB)
	a, b := nw.nodes[hubA], nw.nodes[hubB]
	for _, v := range rooms.SupportedVersions {
		t.Run(string(v), func(t *testing.T) {
			room := a.createRoom(t, alice, v, rooms.PresetPublicChat)
			alias := "#v" + string(v) + ":" + hubA
			if err := a.st.PutAlias(t.Context(), alias, string(room), string(alice)); err != nil {
				t.Fatal(err)
			}
			got, err := b.in.JoinRoom(t.Context(), bob, alias, nil)
			if err != nil || got != room {
				t.Fatalf("join by alias: %s, %v; want %s", got, err, room)
			}
			sameState(t, "after the join", room, a, b)
			m := b.send(t, room, bob, "m.room.message", nil, msg("hi"))
			nw.flush()
			if !a.has(t, m) {
				t.Fatal("message after the join did not arrive")
			}
		})
	}
}

// TestDeclineRemoteInvite: a local user invited from elsewhere declines
// through make_leave/send_leave on the inviter's server.
func TestDeclineRemoteInvite(t *testing.T) {
	nw := newNetwork(t, "sqlite", hubA, hubB)
	a, b := nw.nodes[hubA], nw.nodes[hubB]
	room := b.createRoom(t, bob, id.RoomV11, rooms.PresetPrivateChat)
	if _, err := b.in.Invite(t.Context(), bob, room, alice, ""); err != nil {
		t.Fatal(err)
	}
	if err := a.in.Leave(t.Context(), alice, room); err != nil {
		t.Fatalf("decline: %v", err)
	}
	if got := a.membership(t, room, alice); got != "leave" {
		t.Errorf("on %s alice is %q, want leave", hubA, got)
	}
	if got := b.membership(t, room, alice); got != "leave" {
		t.Errorf("on %s alice is %q, want leave", hubB, got)
	}
}
