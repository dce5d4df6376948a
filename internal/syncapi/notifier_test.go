package syncapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/eimis-hub/eimis/internal/bus"
)

func TestParseToken(t *testing.T) {
	cases := []struct {
		in      string
		pos, ty int64
		bad     bool
	}{
		{"", 0, 0, false},
		{"s42", 42, 0, false},
		{"s42_7", 42, 7, false},
		{"42", 0, 0, true},
		{"s-1", 0, 0, true},
		{"sx_1", 0, 0, true},
		{"s1_x", 0, 0, true},
	}
	for _, c := range cases {
		tok, err := parseToken(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("%q: want error", c.in)
			}
			continue
		}
		if err != nil || tok.pos != c.pos || tok.typing != c.ty {
			t.Errorf("%q = %+v, %v", c.in, tok, err)
		}
		if c.in != "" {
			if back, _ := parseToken(tok.String()); back != tok {
				t.Errorf("%q does not round-trip", c.in)
			}
		}
	}
}

func woken(w *waiter) bool {
	select {
	case <-w.ch:
		return true
	default:
		return false
	}
}

func TestNotifierWakes(t *testing.T) {
	n := NewNotifier(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	inRoom := n.register("@a:x", []string{"!r:x"})
	other := n.register("@b:x", []string{"!other:x"})
	n.OnEvent(bus.EventMsg{RoomID: "!r:x", EventID: "$1", Type: "m.room.message"})
	if !woken(inRoom) || woken(other) {
		t.Fatal("only the waiter on the room must wake")
	}
	// An invite wakes the invitee even though it does not watch the room.
	sk := "@b:x"
	n.OnEvent(bus.EventMsg{RoomID: "!r:x", EventID: "$2", Type: "m.room.member", StateKey: &sk})
	if !woken(other) {
		t.Fatal("invitee not woken")
	}
	if !woken(inRoom) {
		t.Fatal("the member event did not wake the room's waiter")
	}
	n.unregister(inRoom)
	n.OnEvent(bus.EventMsg{RoomID: "!r:x", EventID: "$3", Type: "m.room.message"})
	if woken(inRoom) {
		t.Fatal("unregistered waiter woken")
	}
	if len(n.byRoom["!r:x"]) != 0 {
		t.Fatal("unregister left the waiter indexed")
	}
	wake, _ := json.Marshal(wakeMsg{User: "@b:x"})
	n.OnWake(wake)
	if !woken(other) {
		t.Fatal("wake message for user not delivered")
	}
}

func TestTyping(t *testing.T) {
	n := NewNotifier(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	w := n.register("@a:x", []string{"!r:x"})
	msg := func(user string, typing bool, timeout time.Duration) []byte {
		b, _ := json.Marshal(typingMsg{Room: "!r:x", User: user, Typing: typing, TimeoutMS: timeout.Milliseconds()})
		return b
	}
	n.OnTyping(msg("@b:x", true, time.Minute))
	if !woken(w) {
		t.Fatal("typing did not wake the room")
	}
	users, changed := n.typingSince("!r:x", 0)
	if !changed || len(users) != 1 || users[0] != "@b:x" {
		t.Fatalf("typing = %v %v", users, changed)
	}
	serial := n.currentTypingSerial()
	n.OnTyping(msg("@b:x", true, time.Minute)) // refresh: nothing new for clients
	if _, changed := n.typingSince("!r:x", serial); changed {
		t.Fatal("a refresh must not count as a change")
	}
	n.OnTyping(msg("@c:x", true, time.Millisecond))
	n.ExpireTyping(time.Now().Add(time.Second))
	users, _ = n.typingSince("!r:x", serial)
	if len(users) != 1 || users[0] != "@b:x" {
		t.Fatalf("after expiry typing = %v, want only @b:x", users)
	}
	n.OnTyping(msg("@b:x", false, 0))
	users, changed = n.typingSince("!r:x", serial)
	if !changed || len(users) != 0 {
		t.Fatalf("after stop typing = %v %v", users, changed)
	}
}
