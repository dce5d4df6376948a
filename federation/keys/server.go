package keys

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"go.mau.fi/util/jsontime"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/federation/fedctx"
	"github.com/eimis-hub/eimis/internal/signingkey"
)

// Allower is the federation list's decision on a server (trustlist).
type Allower interface {
	ServerAllowed(server string) error
}

// maxQueryServers bounds one notary query, so one request cannot make
// the hub fetch from the whole trust space.
const maxQueryServers = 100

// ownValidity is how long this hub's published key response is valid:
// peers re-fetch within a day, so a rotation reaches them within a day.
const ownValidity = 24 * time.Hour

// Server is the key server: this hub's keys, and the notary.
type Server struct {
	ServerName string
	Key        signingkey.Key
	// OldKeys are keys this hub signed with before a rotation, published
	// in old_verify_keys so peers still verify old events.
	OldKeys map[id.KeyID]federation.OldVerifyKey
	Ring    *Ring
	List    Allower
	Log     *slog.Logger
}

func (s *Server) signingKey() *federation.SigningKey {
	return &federation.SigningKey{ID: id.KeyID(s.Key.ID), Pub: id.SigningKey(s.Key.PublicBase64()), Priv: s.Key.Private}
}

// Own is this hub's signed key response.
func (s *Server) Own() *federation.ServerKeyResponse {
	k := s.signingKey()
	resp := &federation.ServerKeyResponse{
		ServerName:    s.ServerName,
		OldVerifyKeys: s.OldKeys,
		ValidUntilTS:  jsontime.UM(time.Now().Add(ownValidity)),
		VerifyKeys:    map[id.KeyID]federation.ServerVerifyKey{k.ID: {Key: k.Pub}},
	}
	sig, err := k.SignJSON(resp)
	if err != nil {
		// Signing a struct of strings cannot fail; a failure here is a bug.
		panic(fmt.Sprintf("signing own key response: %v", err))
	}
	resp.Signatures = map[string]map[id.KeyID]string{s.ServerName: {k.ID: sig}}
	return resp
}

// Routes are the key server's endpoints, public (no X-Matrix auth: a
// server fetches keys before it can verify anything).
func (s *Server) Routes() []fedctx.Route {
	return []fedctx.Route{
		{Method: http.MethodGet, Pattern: "/_matrix/key/v2/server", Handler: http.HandlerFunc(s.getServer), Public: true},
		{Method: http.MethodGet, Pattern: "/_matrix/key/v2/server/{keyID}", Handler: http.HandlerFunc(s.getServer), Public: true},
		{Method: http.MethodGet, Pattern: "/_matrix/key/v2/query/{serverName}", Handler: http.HandlerFunc(s.getQuery), Public: true},
		{Method: http.MethodPost, Pattern: "/_matrix/key/v2/query", Handler: http.HandlerFunc(s.postQuery), Public: true},
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) getServer(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Own())
}

type queryResponse struct {
	ServerKeys []json.RawMessage `json:"server_keys"`
}

func (s *Server) getQuery(w http.ResponseWriter, r *http.Request) {
	minValid := time.Now()
	if v := r.URL.Query().Get("minimum_valid_until_ts"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			mautrix.MInvalidParam.WithMessage("minimum_valid_until_ts is not an integer").Write(w)
			return
		}
		minValid = time.UnixMilli(ms)
	}
	writeJSON(w, http.StatusOK, queryResponse{ServerKeys: s.answer(r, map[string]time.Time{r.PathValue("serverName"): minValid})})
}

func (s *Server) postQuery(w http.ResponseWriter, r *http.Request) {
	var req federation.ReqQueryKeys
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		mautrix.MBadJSON.WithMessage("request body is not a key query").Write(w)
		return
	}
	if len(req.ServerKeys) > maxQueryServers {
		mautrix.MLimitExceeded.WithMessage("at most %d servers per query", maxQueryServers).Write(w)
		return
	}
	ask := map[string]time.Time{}
	for server, keys := range req.ServerKeys {
		minValid := time.Now()
		for _, c := range keys {
			if t := c.MinimumValidUntilTS.Time; !c.MinimumValidUntilTS.IsZero() && t.After(minValid) {
				minValid = t
			}
		}
		ask[server] = minValid
	}
	writeJSON(w, http.StatusOK, queryResponse{ServerKeys: s.answer(r, ask)})
}

// answer builds the notary's answer: this hub's own keys, and for each
// server on the federation list its last self-signed response with this
// hub's signature added. Servers off the list are left out: the hub
// vouches for nothing outside the trust space, and never dials it.
func (s *Server) answer(r *http.Request, ask map[string]time.Time) []json.RawMessage {
	out := []json.RawMessage{}
	for server, minValid := range ask {
		if server == s.ServerName {
			raw, err := json.Marshal(s.Own())
			if err == nil {
				out = append(out, raw)
			}
			continue
		}
		if s.List == nil || s.Ring == nil || s.List.ServerAllowed(server) != nil {
			continue
		}
		raw, err := s.Ring.Response(r.Context(), server, minValid)
		if err != nil {
			s.log().Debug("notary: no keys for a listed server", "server", server, "err", err)
			continue
		}
		signed, err := s.countersign(raw)
		if err != nil {
			s.log().Warn("notary: countersigning failed", "server", server, "err", err)
			continue
		}
		out = append(out, signed)
	}
	return out
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// countersign adds this hub's signature to a stored response, keeping
// every other byte of it (the origin's signature covers its fields).
func (s *Server) countersign(raw json.RawMessage) (json.RawMessage, error) {
	k := s.signingKey()
	sig, err := k.SignJSON(raw)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	sigs := map[string]map[string]string{}
	if existing, ok := obj["signatures"]; ok {
		if err := json.Unmarshal(existing, &sigs); err != nil {
			return nil, err
		}
	}
	if sigs[s.ServerName] == nil {
		sigs[s.ServerName] = map[string]string{}
	}
	sigs[s.ServerName][string(k.ID)] = sig
	if obj["signatures"], err = json.Marshal(sigs); err != nil {
		return nil, err
	}
	return json.Marshal(obj)
}
