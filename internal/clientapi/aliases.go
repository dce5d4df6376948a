package clientapi

import (
	"errors"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/policy"
	"github.com/eimis-hub/eimis/internal/store"
)

// maxAliasBytes is the spec's bound on a whole room alias.
const maxAliasBytes = 255

// aliasProblem says why alias is not a well-formed room alias
// (#localpart:server_name), or "" when it is one. The localpart may hold
// any character but ':', whitespace and control characters; aliases are
// shown to people and typed by them, so invisible characters would let
// two aliases look alike.
func aliasProblem(alias string) string {
	if len(alias) > maxAliasBytes {
		return "a room alias is at most 255 bytes"
	}
	if !utf8.ValidString(alias) {
		return "a room alias must be valid UTF-8"
	}
	rest, ok := strings.CutPrefix(alias, "#")
	if !ok {
		return "a room alias starts with #"
	}
	local, server, ok := strings.Cut(rest, ":")
	if !ok || local == "" {
		return "a room alias is #localpart:server"
	}
	if p := aliasLocalpartProblem(local); p != "" {
		return p
	}
	if !id.ValidateServerName(server) {
		return "the server name of the room alias is not valid"
	}
	return ""
}

func aliasLocalpartProblem(local string) string {
	if strings.ContainsFunc(local, func(c rune) bool {
		return c == ':' || unicode.IsSpace(c) || unicode.IsControl(c) || c == utf8.RuneError
	}) {
		return "a room alias localpart cannot contain ':', whitespace or control characters"
	}
	return ""
}

// checkAlias validates an alias from a request; local requires it to be
// on this server (the hub only creates and deletes its own aliases).
func (a *API) checkAlias(alias string, local bool) *mautrix.RespError {
	if p := aliasProblem(alias); p != "" {
		e := mautrix.MInvalidParam.WithMessage("Invalid room alias: %s", p)
		return &e
	}
	if local {
		if _, server, _ := strings.Cut(alias, ":"); server != a.cfg.ServerName {
			e := mautrix.MInvalidParam.WithMessage("Room alias must be on this server (%s)", a.cfg.ServerName)
			return &e
		}
	}
	return nil
}

// aliasFromName builds the alias of createRoom's room_alias_name.
func (a *API) aliasFromName(name string) (id.RoomAlias, *mautrix.RespError) {
	if !utf8.ValidString(name) || aliasLocalpartProblem(name) != "" {
		e := mautrix.MInvalidParam.WithMessage("Invalid room_alias_name: it cannot contain ':', whitespace or control characters")
		return "", &e
	}
	alias := id.NewRoomAlias(name, a.cfg.ServerName)
	if e := a.checkAlias(string(alias), true); e != nil {
		return "", e
	}
	return alias, nil
}

func (a *API) getAlias(w http.ResponseWriter, r *http.Request) {
	alias := r.PathValue("alias")
	if e := a.checkAlias(alias, false); e != nil {
		writeErr(w, *e)
		return
	}
	roomID, err := a.st.ResolveAlias(r.Context(), alias)
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, mautrix.MNotFound.WithMessage("Room alias not found"))
		return
	} else if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"room_id": roomID, "servers": []string{a.cfg.ServerName}})
}

func (a *API) putAlias(w http.ResponseWriter, r *http.Request, s identity.Session) {
	alias := r.PathValue("alias")
	if e := a.checkAlias(alias, true); e != nil {
		writeErr(w, *e)
		return
	}
	var req struct {
		RoomID string `json:"room_id"`
	}
	if e := decodeJSON(r, &req); e != nil {
		writeErr(w, *e)
		return
	}
	if req.RoomID == "" {
		writeErr(w, MMissingParam.WithMessage("room_id is required"))
		return
	}
	if !validRoomID(req.RoomID) {
		writeErr(w, mautrix.MInvalidParam.WithMessage("Invalid room ID"))
		return
	}
	if err := a.mustBeJoined(r, req.RoomID, s); err != nil {
		a.roomsErr(w, r, err)
		return
	}
	err := a.st.PutAlias(r.Context(), alias, req.RoomID, string(s.UserID))
	if errors.Is(err, store.ErrExists) {
		writeErr(w, mautrix.MUnknown.WithStatus(http.StatusConflict).WithMessage("Room alias already exists"))
		return
	} else if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (a *API) deleteAlias(w http.ResponseWriter, r *http.Request, s identity.Session) {
	alias := r.PathValue("alias")
	if e := a.checkAlias(alias, true); e != nil {
		writeErr(w, *e)
		return
	}
	if !s.Admin {
		a.forbid(w, r, policy.NotServerAdmin, "alias.delete", alias,
			mautrix.MForbidden.WithMessage("Only server admins can delete aliases"))
		return
	}
	err := a.st.DeleteAlias(r.Context(), alias)
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, mautrix.MNotFound.WithMessage("Room alias not found"))
		return
	} else if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}
