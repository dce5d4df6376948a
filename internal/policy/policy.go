// Package policy decides who may take part on the hub: a practitioner
// must be in the health directory, active, and hold an allowed
// profession. It answers from the directory's in-memory index, so a
// decision costs a map look-up; the callers (login, invite, join, send)
// turn a Refusal into M_FORBIDDEN with its code and text.
//
// Deny when unsure: an unloaded directory refuses everyone.
package policy

import (
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/directory"
)

// Refusal is a decision against someone, with a stable code.
type Refusal struct {
	Code    Code
	Subject string
}

func (r *Refusal) Error() string {
	msg, ok := messages[r.Code]
	if !ok {
		msg = "%s is refused"
	}
	return fmt.Sprintf(msg, r.Subject)
}

// Engine holds what decisions need.
type Engine struct {
	serverName string
	dir        *directory.Atomic
	// allowed profession codes (TRE_G15); nil allows every profession the
	// directory lists. The RPPS lists health professionals only, and
	// CSP R1110-2 admits all of them to exchanges for care coordination,
	// so a deployment narrows this list rather than widening it.
	allowed map[string]bool
}

// New returns an engine for a server's local users.
func New(serverName string, dir *directory.Atomic, allowedProfessions []string) *Engine {
	e := &Engine{serverName: serverName, dir: dir}
	if len(allowedProfessions) > 0 {
		e.allowed = map[string]bool{}
		for _, c := range allowedProfessions {
			e.allowed[c] = true
		}
	}
	return e
}

// IDNatOf maps a Matrix user ID to the practitioner's idNat: the canonical
// practitioner ID is @<idNat>:<server>, as Pro Santé Connect's
// preferred_username gives it.
func (e *Engine) IDNatOf(u id.UserID) (string, error) {
	lp, hs, err := u.Parse()
	if err != nil {
		return "", &Refusal{Code: NotAPractitionerID, Subject: string(u)}
	}
	if hs != e.serverName {
		return "", &Refusal{Code: ForeignServer, Subject: string(u)}
	}
	if _, _, err := directory.ParseIDNat(lp); err != nil {
		return "", &Refusal{Code: NotAPractitionerID, Subject: string(u)}
	}
	return lp, nil
}

// CheckUser decides whether a local user may take part.
func (e *Engine) CheckUser(u id.UserID) error {
	idnat, err := e.IDNatOf(u)
	if err != nil {
		return err
	}
	return e.CheckPractitioner(idnat)
}

// CheckPractitioner decides on an idNat.
func (e *Engine) CheckPractitioner(idnat string) error {
	idx := e.dir.Load()
	if idx == nil || idx.Len() == 0 {
		return &Refusal{Code: DirectoryUnavailable, Subject: idnat}
	}
	entry, ok := idx.Lookup(idnat)
	switch {
	case !ok:
		return &Refusal{Code: NotInDirectory, Subject: idnat}
	case !entry.Active:
		return &Refusal{Code: InactivePractitioner, Subject: idnat}
	}
	if e.allowed == nil {
		return nil
	}
	for _, c := range entry.ProfessionCodes {
		if e.allowed[c] {
			return nil
		}
	}
	return &Refusal{Code: ProfessionNotAllowed, Subject: idnat}
}

// AsRefusal returns the decision inside err, if err is one (as opposed to
// a failure to decide).
func AsRefusal(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}
