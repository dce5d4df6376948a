package hub_test

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
	_ "modernc.org/sqlite"

	"github.com/eimis-hub/eimis/internal/audit"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/store"
)

func auditEntries(t *testing.T, st store.Store) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	if _, err := st.ReadAudit(ctxT(t), store.AuditQuery{}, func(e store.AuditEntry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAuditTrail: what happens on the hub leaves a metadata-only trace, the
// chain verifies, and a row changed behind the hub's back is caught.
func TestAuditTrail(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	ctx := ctxT(t)
	alice := h.NewUser(t, "alice")
	bob := h.NewUser(t, "bob")
	h.ImportDirectory(t, hubtest.Without(hubtest.People(), "dave"))
	if _, err := h.Trust.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	const secret = "Le patient de la chambre 12 va mieux"
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{bob.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	msg, err := alice.SendText(ctx, room.RoomID, secret)
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: h.UserID("user999")})
	wantRefusal(t, "invite of someone absent from the directory", err, "EIMIS_NOT_IN_DIRECTORY")

	// The accepted events arrive through the stream consumers.
	var entries []audit.Entry
	hubtest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		entries = auditEntries(t, h.Store)
		for _, e := range entries {
			if e.EventID == string(msg.EventID) {
				return nil
			}
		}
		return errors.New("the message's audit entry has not arrived")
	})
	has := func(pred func(audit.Entry) bool) bool {
		for _, e := range entries {
			if pred(e) {
				return true
			}
		}
		return false
	}
	checks := map[string]func(audit.Entry) bool{
		"login allowed": func(e audit.Entry) bool {
			return e.Action == audit.ActionLogin && e.Actor == string(alice.UserID) && e.Decision == audit.Allow && e.RequestID != ""
		},
		"room created": func(e audit.Entry) bool { return e.Action == audit.ActionRoomCreate && e.RoomID == string(room.RoomID) },
		"bob joined":   func(e audit.Entry) bool { return e.Action == audit.ActionRoomJoin && e.Target == string(bob.UserID) },
		"message sent (metadata)": func(e audit.Entry) bool {
			return e.Action == audit.ActionEventSend && e.EventID == string(msg.EventID) && e.Actor == string(alice.UserID)
		},
		"invite refused with its code": func(e audit.Entry) bool {
			return e.Action == audit.ActionRoomInvite && e.Decision == audit.Deny && e.Reason == "EIMIS_NOT_IN_DIRECTORY" && e.RoomID == string(room.RoomID)
		},
	}
	for name, pred := range checks {
		if !has(pred) {
			t.Errorf("no audit entry for %s", name)
		}
	}
	// Never message content, in any field.
	for _, e := range entries {
		v := reflect.ValueOf(e)
		for i := range v.NumField() {
			if s, ok := v.Field(i).Interface().(string); ok && strings.Contains(s, "chambre 12") {
				t.Fatalf("audit entry %d carries message content in %s", e.Seq, v.Type().Field(i).Name)
			}
		}
	}

	res, err := audit.Verify(ctx, h.Store)
	if err != nil || res.Checked < int64(len(entries)) {
		t.Fatalf("verify = %+v, %v", res, err)
	}

	// Tamper with one row directly in the database (the schema's trigger
	// refuses updates, so the tamperer drops it first).
	target := entries[len(entries)/2].Seq
	db, err := sql.Open("sqlite", filepath.Join(h.Config.DataDir, "eimis.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_log SET decision = 'allow' WHERE seq = ?`, target); err == nil {
		t.Fatal("the schema must refuse updates of audit rows")
	}
	for _, q := range []string{`DROP TRIGGER audit_log_no_update`, fmt.Sprintf(`UPDATE audit_log SET actor = '@someone-else:hub.test' WHERE seq = %d`, target)} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	res, err = audit.Verify(ctx, h.Store)
	if !errors.Is(err, audit.ErrBroken) || res.Break == nil || res.Break.Seq != target {
		t.Fatalf("tampered row %d not caught: %+v, %v", target, res.Break, err)
	}
}
