// Package httpjson writes the hub's JSON answers, for every HTTP API it
// serves (Client-Server, admin, consent, media, appservice bindings), so
// they all answer alike.
package httpjson

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix"
)

// Write answers status with v as JSON.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Error answers a Matrix error with its status (400 when it has none).
// Not with mautrix's RespError.Write: that adds the Client-Server API's
// open CORS headers to every answer, and CORS is decided once, by path, in
// front of the whole router (the admin API must never send them).
func Error(w http.ResponseWriter, e mautrix.RespError) {
	if e.StatusCode == 0 {
		e.StatusCode = http.StatusBadRequest
	}
	for k, v := range e.ExtraHeader {
		w.Header().Set(k, v)
	}
	Write(w, e.StatusCode, &e)
}
