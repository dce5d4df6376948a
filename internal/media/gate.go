package media

import (
	"errors"
	"net/http"

	"maunium.net/go/mautrix"
)

// UploadGate decides whether an authenticated upload (or the reservation
// of a media ID) may go ahead, before its body is read: the hub's rate
// limits. It returns nil, or a mautrix.RespError written to the client as
// it is (429 M_LIMIT_EXCEEDED …); any other error is answered as an
// internal error.
type UploadGate func(r *http.Request, uploader string) error

// SetUploadGate installs g; call before serving.
func (s *Service) SetUploadGate(g UploadGate) { s.gate = g }

// admit runs the gate, answering a refusal itself.
func (s *Service) admit(w http.ResponseWriter, r *http.Request, user string) bool {
	if s.gate == nil {
		return true
	}
	err := s.gate(r, user)
	if err == nil {
		return true
	}
	var re mautrix.RespError
	if errors.As(err, &re) {
		if re.StatusCode == 0 {
			re.StatusCode = http.StatusForbidden
		}
		writeErr(w, re)
		return false
	}
	s.internal(w, r, err)
	return false
}
