package hub_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/hub/hubtest"
)

// reader calls read endpoints as one user and keeps the raw answer, so a
// test can assert the exact status and error code.
type reader struct {
	t   *testing.T
	h   *hubtest.Hub
	cli *mautrix.Client
}

type answer struct {
	status int
	body   []byte
}

func (a answer) errcode() string {
	var e struct {
		ErrCode string `json:"errcode"`
	}
	_ = json.Unmarshal(a.body, &e)
	return e.ErrCode
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
}

func (r reader) get(path string, query ...string) answer {
	r.t.Helper()
	u := r.h.URL + path
	if len(query) > 0 {
		q := url.Values{}
		for i := 0; i+1 < len(query); i += 2 {
			q.Set(query[i], query[i+1])
		}
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctxT(r.t), http.MethodGet, u, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+r.cli.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, body}
}

func roomPath(room id.RoomID, rest string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(string(room)) + rest
}

// want asserts an answer's status and, for errors, its Matrix code.
func want(t *testing.T, what string, a answer, status int, code string) {
	t.Helper()
	if a.status != status || (code != "" && a.errcode() != code) {
		t.Fatalf("%s = %d %s, want %d %s", what, a.status, a.body, status, code)
	}
}

func (r reader) event(room id.RoomID, ev id.EventID) answer {
	return r.get(roomPath(room, "/event/"+url.PathEscape(string(ev))))
}

// messages pages backwards through everything the user may see and
// returns the event IDs, newest first.
func (r reader) messages(room id.RoomID) []id.EventID {
	r.t.Helper()
	var ids []id.EventID
	from := ""
	for range 50 {
		q := []string{"dir", "b", "limit", "3"}
		if from != "" {
			q = append(q, "from", from)
		}
		a := r.get(roomPath(room, "/messages"), q...)
		want(r.t, "messages", a, 200, "")
		var m struct {
			Chunk []struct {
				EventID id.EventID `json:"event_id"`
			} `json:"chunk"`
			End string `json:"end"`
		}
		a.decode(r.t, &m)
		for _, e := range m.Chunk {
			ids = append(ids, e.EventID)
		}
		if m.End == "" {
			return ids
		}
		from = m.End
	}
	r.t.Fatal("messages: pagination does not end")
	return nil
}

// token is a pagination token for "now", as a client gets from /messages.
func (r reader) token(room id.RoomID) string {
	r.t.Helper()
	a := r.get(roomPath(room, "/messages"), "dir", "b", "limit", "1")
	want(r.t, "messages", a, 200, "")
	var m struct {
		Start string `json:"start"`
	}
	a.decode(r.t, &m)
	return m.Start
}

type stateEvent struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	EventID  id.EventID      `json:"event_id"`
	Content  json.RawMessage `json:"content"`
}

func contentField(t *testing.T, raw json.RawMessage, key string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("content %s: %v", raw, err)
	}
	s, _ := m[key].(string)
	return s
}

// members returns user → membership from /members.
func (r reader) members(room id.RoomID, query ...string) map[string]string {
	r.t.Helper()
	a := r.get(roomPath(room, "/members"), query...)
	want(r.t, "members", a, 200, "")
	var m struct {
		Chunk []stateEvent `json:"chunk"`
	}
	a.decode(r.t, &m)
	out := map[string]string{}
	for _, e := range m.Chunk {
		out[e.StateKey] = contentField(r.t, e.Content, "membership")
	}
	return out
}

func (r reader) joinedMembers(room id.RoomID) []string {
	r.t.Helper()
	a := r.get(roomPath(room, "/joined_members"))
	want(r.t, "joined_members", a, 200, "")
	var m struct {
		Joined map[string]any `json:"joined"`
	}
	a.decode(r.t, &m)
	var out []string
	for u := range m.Joined {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

func (r reader) state(room id.RoomID) []stateEvent {
	r.t.Helper()
	a := r.get(roomPath(room, "/state"))
	want(r.t, "state", a, 200, "")
	var evs []stateEvent
	a.decode(r.t, &evs)
	return evs
}

func stateOf(evs []stateEvent, typ, key string) *stateEvent {
	for i := range evs {
		if evs[i].Type == typ && evs[i].StateKey == key {
			return &evs[i]
		}
	}
	return nil
}

type contextAnswer struct {
	Event        stateEvent   `json:"event"`
	EventsBefore []stateEvent `json:"events_before"`
	EventsAfter  []stateEvent `json:"events_after"`
	State        []stateEvent `json:"state"`
	Start, End   string
}

func (r reader) context(room id.RoomID, ev id.EventID) contextAnswer {
	r.t.Helper()
	a := r.get(roomPath(room, "/context/"+url.PathEscape(string(ev))), "limit", "20")
	want(r.t, "context", a, 200, "")
	var c contextAnswer
	a.decode(r.t, &c)
	return c
}

func idsOf(evs []stateEvent) []id.EventID {
	out := make([]id.EventID, len(evs))
	for i, e := range evs {
		out[i] = e.EventID
	}
	return out
}

func historyRoom(t *testing.T, cli *mautrix.Client, vis string) id.RoomID {
	t.Helper()
	room, err := cli.CreateRoom(ctxT(t), &mautrix.ReqCreateRoom{
		Name: "Room " + vis, Preset: "private_chat",
		InitialState: []*event.Event{{
			Type: event.StateHistoryVisibility, StateKey: new(string),
			Content: event.Content{Raw: map[string]any{"history_visibility": vis}},
		}},
	})
	if err != nil {
		t.Fatalf("create %s room: %v", vis, err)
	}
	return room.RoomID
}

func send(t *testing.T, cli *mautrix.Client, room id.RoomID, body string) id.EventID {
	t.Helper()
	r, err := cli.SendText(ctxT(t), room, body)
	if err != nil {
		t.Fatalf("send %q: %v", body, err)
	}
	return r.EventID
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestHistoryVisibility reads rooms through every read path as users who
// joined late, left, or were never members, and checks that each sees
// exactly what m.room.history_visibility allows.
func TestHistoryVisibility(t *testing.T) {
	for _, dialect := range hubtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			h := hubtest.Start(t, hubtest.Options{Dialect: dialect})
			alice := h.NewUser(t, "alice")
			bob := h.NewUser(t, "bob")
			carol := h.NewUser(t, "carol")
			dave := h.NewUser(t, "dave")
			ra, rb, rd := reader{t, h, alice}, reader{t, h, bob}, reader{t, h, dave}
			ctx := ctxT(t)

			// One room per visibility: a message before Bob's invite, one
			// while he is invited, one after he joined.
			type room struct {
				id                     id.RoomID
				before, invited, after id.EventID
				tokenBefore            string
			}
			rooms := map[string]*room{}
			for _, vis := range []string{"joined", "invited", "shared"} {
				r := &room{id: historyRoom(t, alice, vis)}
				r.before = send(t, alice, r.id, "before "+vis)
				r.tokenBefore = ra.token(r.id)
				_, err := alice.InviteUser(ctx, r.id, &mautrix.ReqInviteUser{UserID: bob.UserID})
				must(t, "invite", err)
				r.invited = send(t, alice, r.id, "invited "+vis)
				rooms[vis] = r
			}

			t.Run("invited, not joined yet", func(t *testing.T) {
				// `invited`: from the invite on, even before joining.
				r := rooms["invited"]
				want(t, "invitee reads event after invite", rb.event(r.id, r.invited), 200, "")
				want(t, "invitee reads event before invite", rb.event(r.id, r.before), 404, "M_NOT_FOUND")
				// The invitee's state is the stripped invite state, not /state.
				want(t, "invitee reads state", rb.get(roomPath(r.id, "/state")), 403, "M_FORBIDDEN")
				// `shared` and `joined`: nothing until the join.
				for _, vis := range []string{"shared", "joined"} {
					r := rooms[vis]
					want(t, vis+": invitee reads event", rb.event(r.id, r.invited), 403, "M_FORBIDDEN")
					want(t, vis+": invitee reads messages", rb.get(roomPath(r.id, "/messages"), "dir", "b"), 403, "M_FORBIDDEN")
					want(t, vis+": invitee reads members", rb.get(roomPath(r.id, "/members")), 403, "M_FORBIDDEN")
				}
			})

			for _, r := range rooms {
				_, err := bob.JoinRoomByID(ctx, r.id)
				must(t, "join", err)
			}
			for vis, r := range rooms {
				r.after = send(t, alice, r.id, "after "+vis)
			}

			t.Run("joined late", func(t *testing.T) {
				for _, c := range []struct {
					vis             string
					before, invited bool
				}{
					{"joined", false, false},
					{"invited", false, true},
					{"shared", true, true},
				} {
					r := rooms[c.vis]
					status := func(ok bool) (int, string) {
						if ok {
							return 200, ""
						}
						return 404, "M_NOT_FOUND"
					}
					s, code := status(c.before)
					want(t, c.vis+": event before invite", rb.event(r.id, r.before), s, code)
					s, code = status(c.invited)
					want(t, c.vis+": event while invited", rb.event(r.id, r.invited), s, code)
					want(t, c.vis+": event after join", rb.event(r.id, r.after), 200, "")

					msgs := rb.messages(r.id)
					if slices.Contains(msgs, r.before) != c.before || slices.Contains(msgs, r.invited) != c.invited || !slices.Contains(msgs, r.after) {
						t.Errorf("%s: messages %v: before %v invited %v", c.vis, msgs, c.before, c.invited)
					}
					cx := rb.context(r.id, r.after)
					before := idsOf(cx.EventsBefore)
					if slices.Contains(before, r.before) != c.before || slices.Contains(before, r.invited) != c.invited {
						t.Errorf("%s: context events_before %v", c.vis, before)
					}
					rel := rb.get("/_matrix/client/v1/rooms/" + url.PathEscape(string(r.id)) + "/relations/" + url.PathEscape(string(r.before)))
					s, code = status(c.before)
					want(t, c.vis+": relations of an event before invite", rel, s, code)

					// Membership before Bob was in the room, as of a token.
					at := rb.get(roomPath(r.id, "/members"), "at", r.tokenBefore)
					if c.before {
						want(t, c.vis+": members at a past token", at, 200, "")
						if m := rb.members(r.id, "at", r.tokenBefore); m[string(bob.UserID)] != "" || m[string(alice.UserID)] != "join" {
							t.Errorf("%s: members at a past token = %v", c.vis, m)
						}
					} else {
						want(t, c.vis+": members at a token before the join", at, 403, "M_FORBIDDEN")
					}
				}
				// Alice created the rooms: she sees everything.
				r := rooms["joined"]
				if msgs := ra.messages(r.id); !slices.Contains(msgs, r.before) || !slices.Contains(msgs, r.invited) {
					t.Errorf("creator's messages %v", msgs)
				}
			})

			t.Run("members at", func(t *testing.T) {
				r := rooms["shared"]
				tokInvited := ra.token(r.id)
				_, err := alice.InviteUser(ctx, r.id, &mautrix.ReqInviteUser{UserID: carol.UserID})
				must(t, "invite carol", err)
				_, err = carol.JoinRoomByID(ctx, r.id)
				must(t, "carol joins", err)
				if m := ra.members(r.id, "at", tokInvited); m[string(carol.UserID)] != "" || m[string(bob.UserID)] != "join" {
					t.Errorf("members at a token before carol = %v", m)
				}
				if m := ra.members(r.id); m[string(carol.UserID)] != "join" {
					t.Errorf("members now = %v", m)
				}
				if m := ra.members(r.id, "membership", "join"); len(m) != 3 {
					t.Errorf("members membership=join = %v", m)
				}
				if m := ra.members(r.id, "not_membership", "join"); len(m) != 0 {
					t.Errorf("members not_membership=join = %v", m)
				}
				want(t, "members at a bad token", ra.get(roomPath(r.id, "/members"), "at", "nonsense"), 400, "M_INVALID_PARAM")
			})

			t.Run("after leaving", func(t *testing.T) {
				r := rooms["shared"]
				lastSeen := send(t, alice, r.id, "last message bob sees")
				sinceResp, err := bob.SyncRequest(ctx, 0, "", "", false, "")
				must(t, "bob sync", err)
				_, err = bob.LeaveRoom(ctx, r.id)
				must(t, "leave", err)
				leaveTok := rb.token(r.id)
				// Everything after the leave: a rename, a message, a new member.
				rename, err := alice.SendStateEvent(ctx, r.id, event.StateRoomName, "", map[string]any{"name": "Renamed after bob left"})
				must(t, "rename", err)
				afterLeave := send(t, alice, r.id, "after bob left")
				_, err = alice.InviteUser(ctx, r.id, &mautrix.ReqInviteUser{UserID: dave.UserID})
				must(t, "invite dave", err)
				_, err = dave.JoinRoomByID(ctx, r.id)
				must(t, "dave joins", err)

				st := rb.state(r.id)
				if n := stateOf(st, "m.room.name", ""); n == nil || n.EventID == rename.EventID {
					t.Errorf("state shows the rename after the leave: %+v", n)
				}
				if m := stateOf(st, "m.room.member", string(bob.UserID)); m == nil || contentField(t, m.Content, "membership") != "leave" {
					t.Errorf("state: bob's membership = %+v", m)
				}
				if stateOf(st, "m.room.member", string(dave.UserID)) != nil {
					t.Errorf("state shows a member who joined after the leave")
				}
				var name struct {
					Name string `json:"name"`
				}
				a := rb.get(roomPath(r.id, "/state/m.room.name/"))
				want(t, "state event", a, 200, "")
				a.decode(t, &name)
				if name.Name != "Room shared" {
					t.Errorf("name as bob left = %q", name.Name)
				}
				if m := rb.members(r.id); m[string(dave.UserID)] != "" || m[string(bob.UserID)] != "leave" {
					t.Errorf("members after leaving = %v", m)
				}
				if m := rb.members(r.id, "at", ra.token(r.id)); m[string(dave.UserID)] != "" {
					t.Errorf("members at a token after the leave = %v", m)
				}
				wantJoined := []string{string(alice.UserID), string(carol.UserID)}
				slices.Sort(wantJoined)
				if got := rb.joinedMembers(r.id); !slices.Equal(got, wantJoined) {
					t.Errorf("joined_members after leaving = %v, want %v", got, wantJoined)
				}
				msgs := rb.messages(r.id)
				if len(msgs) == 0 || slices.Contains(msgs, afterLeave) || slices.Contains(msgs, rename.EventID) || !slices.Contains(msgs, lastSeen) {
					t.Errorf("messages after leaving = %v", msgs)
				}
				leaveEv := msgs[0]
				var leave stateEvent
				a = rb.event(r.id, leaveEv)
				want(t, "own leave event", a, 200, "")
				a.decode(t, &leave)
				if leave.Type != "m.room.member" || leave.StateKey != string(bob.UserID) {
					t.Errorf("newest visible event is %+v, want bob's leave", leave)
				}
				want(t, "event after the leave", rb.event(r.id, afterLeave), 404, "M_NOT_FOUND")
				want(t, "rename after the leave", rb.event(r.id, rename.EventID), 404, "M_NOT_FOUND")
				want(t, "context of an event after the leave", rb.get(roomPath(r.id, "/context/"+url.PathEscape(string(afterLeave)))), 404, "M_NOT_FOUND")
				cx := rb.context(r.id, lastSeen)
				if after := idsOf(cx.EventsAfter); len(after) == 0 || after[len(after)-1] != leaveEv || slices.Contains(after, afterLeave) {
					t.Errorf("context events_after = %v", after)
				}
				if n := stateOf(cx.State, "m.room.name", ""); n == nil || n.EventID == rename.EventID {
					t.Errorf("context state shows the rename: %+v", n)
				}
				if stateOf(cx.State, "m.room.member", string(dave.UserID)) != nil {
					t.Errorf("context state shows dave")
				}
				// Paging forwards from the leave finds nothing.
				a = rb.get(roomPath(r.id, "/messages"), "dir", "f", "from", leaveTok)
				want(t, "messages forwards", a, 200, "")
				var fwd struct {
					Chunk []any `json:"chunk"`
				}
				a.decode(t, &fwd)
				if len(fwd.Chunk) != 0 {
					t.Errorf("messages forwards from the leave = %d events", len(fwd.Chunk))
				}

				// /sync: the room moves to "leave", its timeline ending at the leave.
				resp, err := bob.SyncRequest(ctx, 0, sinceResp.NextBatch, "", false, "")
				must(t, "sync", err)
				left, ok := resp.Rooms.Leave[r.id]
				if !ok {
					t.Fatalf("left room not in the leave section")
				}
				tl := left.Timeline.Events
				if len(tl) == 0 || tl[len(tl)-1].ID != leaveEv {
					t.Fatalf("left room timeline does not end at the leave: %d events", len(tl))
				}
				for _, e := range tl {
					if e.ID == afterLeave || e.ID == rename.EventID {
						t.Errorf("left room timeline has %s from after the leave", e.ID)
					}
				}
				if _, ok := resp.Rooms.Join[r.id]; ok {
					t.Errorf("left room still in the join section")
				}
				resp, err = bob.SyncRequest(ctx, 0, resp.NextBatch, "", false, "")
				must(t, "sync", err)
				if _, ok := resp.Rooms.Leave[r.id]; ok {
					t.Errorf("left room again in a later sync")
				}
				if _, ok := resp.Rooms.Join[r.id]; ok {
					t.Errorf("left room in the join section of a later sync")
				}
			})

			t.Run("world_readable", func(t *testing.T) {
				w := historyRoom(t, alice, "world_readable")
				public := send(t, alice, w, "readable by any practitioner")
				// initial_state replaced the preset's `shared`.
				var hv []string
				for _, e := range ra.state(w) {
					if e.Type == "m.room.history_visibility" {
						hv = append(hv, contentField(t, e.Content, "history_visibility"))
					}
				}
				if !slices.Equal(hv, []string{"world_readable"}) {
					t.Errorf("history visibility state = %v", hv)
				}
				// Dave never joined.
				want(t, "non-member reads an event", rd.event(w, public), 200, "")
				if msgs := rd.messages(w); !slices.Contains(msgs, public) {
					t.Errorf("non-member messages = %v", msgs)
				}
				if n := stateOf(rd.state(w), "m.room.name", ""); n == nil {
					t.Errorf("non-member state has no name")
				}
				if m := rd.members(w); m[string(alice.UserID)] != "join" {
					t.Errorf("non-member members = %v", m)
				}
				if got := rd.joinedMembers(w); !slices.Equal(got, []string{string(alice.UserID)}) {
					t.Errorf("non-member joined_members = %v", got)
				}
				cx := rd.context(w, public)
				if cx.Event.EventID != public {
					t.Errorf("non-member context = %+v", cx.Event)
				}
				// Reading is not writing.
				if _, err := dave.SendText(ctx, w, "intrusion"); respErr(err) != "M_FORBIDDEN" {
					t.Errorf("non-member send: want M_FORBIDDEN, got %v", err)
				}
				if _, err := dave.SendStateEvent(ctx, w, event.StateRoomName, "", map[string]any{"name": "x"}); respErr(err) != "M_FORBIDDEN" {
					t.Errorf("non-member state: want M_FORBIDDEN, got %v", err)
				}
				// Once the room is `joined` again, what follows is hidden.
				_, err := alice.SendStateEvent(ctx, w, event.StateHistoryVisibility, "", map[string]any{"history_visibility": "joined"})
				must(t, "set joined", err)
				private := send(t, alice, w, "members only")
				want(t, "non-member reads a later private event", rd.event(w, private), 404, "M_NOT_FOUND")
				want(t, "non-member still reads the public one", rd.event(w, public), 200, "")
				want(t, "non-member state once private", rd.get(roomPath(w, "/state")), 403, "M_FORBIDDEN")
			})

			t.Run("stranger", func(t *testing.T) {
				r := rooms["joined"]
				eve := reader{t, h, h.NewUser(t, "eve")}
				for _, c := range []struct {
					what string
					a    answer
				}{
					{"event", eve.event(r.id, r.after)},
					{"context", eve.get(roomPath(r.id, "/context/"+url.PathEscape(string(r.after))))},
					{"messages", eve.get(roomPath(r.id, "/messages"), "dir", "b")},
					{"state", eve.get(roomPath(r.id, "/state"))},
					{"state event", eve.get(roomPath(r.id, "/state/m.room.name/"))},
					{"members", eve.get(roomPath(r.id, "/members"))},
					{"joined_members", eve.get(roomPath(r.id, "/joined_members"))},
					{"aliases", eve.get(roomPath(r.id, "/aliases"))},
					{"relations", eve.get("/_matrix/client/v1/rooms/" + url.PathEscape(string(r.id)) + "/relations/" + url.PathEscape(string(r.after)))},
				} {
					want(t, "stranger "+c.what, c.a, 403, "M_FORBIDDEN")
				}
				// An event of another room is not found through this one.
				other := rooms["shared"]
				want(t, "event through another room", rb.event(r.id, other.before), 404, "M_NOT_FOUND")
			})
		})
	}
}
