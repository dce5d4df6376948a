// Package policy decides who may take part on the hub: a practitioner
// must be in the health directory, active, and hold an allowed
// profession; an organisational or applicative account is authorised
// through its responsible practitioner. It answers from in-memory
// snapshots (the directory index, the service accounts), so a decision
// costs a map look-up; the callers (login, invite, join, send) turn a
// Refusal into M_FORBIDDEN with its code and text.
//
// Deny when unsure: an unloaded directory refuses everyone.
package policy

import (
	"errors"
	"fmt"
	"sync/atomic"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/directory"
	"github.com/eimis-hub/eimis/internal/store"
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

// Definite reports whether the refusal follows from what the directory
// says about the person, as opposed to the hub not knowing yet
// (DirectoryUnavailable). Only definite refusals justify removing someone
// from their rooms.
func (r *Refusal) Definite() bool {
	switch r.Code {
	case InactivePractitioner, NotInDirectory, ProfessionNotAllowed, ResponsibleRefused:
		return true
	case ConsentRequired:
		// A puppet without its practitioner's consent (never given, or
		// revoked) leaves its rooms: while it is a member, its
		// appservice receives their events.
		return true
	}
	return false
}

// Engine holds what decisions need.
type Engine struct {
	serverName string
	dir        *directory.Atomic
	// allowed profession codes (TRE_G15); nil allows every profession the
	// directory lists. The RPPS lists health professionals only, and
	// CSP R1110-2 admits all of them to exchanges for care coordination,
	// so a deployment narrows this list rather than widening it.
	allowed  map[string]bool
	services atomic.Pointer[map[string]store.ServiceAccount]
	// puppets are the appservices' user namespaces (puppets.go).
	puppets atomic.Pointer[[]PuppetNamespace]
	// consents are the practitioners who let an appservice's puppets
	// stand for them (puppets.go).
	consents atomic.Pointer[map[PuppetConsent]bool]
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

// SetServiceAccounts replaces the registered service accounts.
func (e *Engine) SetServiceAccounts(list []store.ServiceAccount) {
	m := make(map[string]store.ServiceAccount, len(list))
	for _, a := range list {
		m[a.Localpart] = a
	}
	e.services.Store(&m)
}

// ServiceAccount returns the registration of a local service account.
func (e *Engine) ServiceAccount(localpart string) (store.ServiceAccount, bool) {
	m := e.services.Load()
	if m == nil {
		return store.ServiceAccount{}, false
	}
	a, ok := (*m)[localpart]
	return a, ok
}

// IDNatOf maps a Matrix user ID to the practitioner's idNat: the canonical
// practitioner ID is @<idNat>:<server>, as Pro Santé Connect's
// preferred_username gives it.
func (e *Engine) IDNatOf(u id.UserID) (string, error) {
	lp, err := e.localpart(u)
	if err != nil {
		return "", err
	}
	if _, _, err := directory.ParseIDNat(lp); err != nil {
		return "", &Refusal{Code: NotAPractitionerID, Subject: string(u)}
	}
	return lp, nil
}

func (e *Engine) localpart(u id.UserID) (string, error) {
	lp, hs, err := u.Parse()
	if err != nil {
		return "", &Refusal{Code: NotAPractitionerID, Subject: string(u)}
	}
	if hs != e.serverName {
		return "", &Refusal{Code: ForeignServer, Subject: string(u)}
	}
	return lp, nil
}

// Subject is who a local user ID stands for: a practitioner (IDNat) or a
// registered service account (Service, with the responsible practitioner's
// IDNat).
type Subject struct {
	IDNat   string
	Service *store.ServiceAccount
	// Appservice is set for an appservice's puppet: the registration ID
	// whose namespace holds it.
	Appservice string
}

// SubjectOf maps any local user ID to the practitioner it is, or the
// service account registered under a practitioner. Anything else is
// refused: there are no accounts outside the trust space.
func (e *Engine) SubjectOf(u id.UserID) (Subject, error) {
	lp, err := e.localpart(u)
	if err != nil {
		return Subject{}, err
	}
	if _, _, err := directory.ParseIDNat(lp); err == nil {
		return Subject{IDNat: lp}, nil
	}
	if a, ok := e.ServiceAccount(lp); ok {
		return Subject{IDNat: a.ResponsibleIDNat, Service: &a}, nil
	}
	// An appservice's puppet stands for the practitioner its ID names.
	if sub, ok, err := e.puppetSubject(u); ok {
		return sub, err
	}
	return Subject{}, &Refusal{Code: NotAPractitionerID, Subject: string(u)}
}

// CheckUser decides whether a local user may take part in conversations.
func (e *Engine) CheckUser(u id.UserID) error {
	sub, err := e.SubjectOf(u)
	if err != nil {
		return err
	}
	if sub.Appservice != "" {
		if err := e.CheckPractitioner(sub.IDNat); err != nil {
			return err
		}
		if !e.Consented(sub.Appservice, sub.IDNat) {
			return &Refusal{Code: ConsentRequired, Subject: string(u)}
		}
		return nil
	}
	if sub.Service == nil {
		return e.CheckPractitioner(sub.IDNat)
	}
	if sub.Service.Kind == store.KindAdmin {
		return &Refusal{Code: AdminAccount, Subject: string(u)}
	}
	if err := e.CheckPractitioner(sub.IDNat); err != nil {
		if r, ok := AsRefusal(err); ok && r.Code == DirectoryUnavailable {
			return err
		}
		return &Refusal{Code: ResponsibleRefused, Subject: string(u)}
	}
	return nil
}

// CheckLogin decides whether a local user may log in: anyone who may take
// part, and administration accounts (which the room server then keeps out
// of every room).
func (e *Engine) CheckLogin(u id.UserID) error {
	err := e.CheckUser(u)
	if r, ok := AsRefusal(err); ok && r.Code == AdminAccount {
		return nil
	}
	return err
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

// DisplayName is the name the hub shows for a local user: the directory's
// "First Last - Profession" for a practitioner, the registered name for a
// service account. ok is false for anyone else, whose chosen name stands.
func (e *Engine) DisplayName(u id.UserID) (string, bool) {
	sub, err := e.SubjectOf(u)
	if err != nil {
		return "", false
	}
	if sub.Service != nil {
		return sub.Service.Name, sub.Service.Name != ""
	}
	if sub.Appservice != "" && !e.Consented(sub.Appservice, sub.IDNat) {
		// No consent, no borrowed name.
		return "", false
	}
	entry, ok := e.dir.Load().Lookup(sub.IDNat)
	if !ok || entry.DisplayName == "" {
		return "", false
	}
	return entry.DisplayName, true
}

// AsRefusal returns the decision inside err, if err is one (as opposed to
// a failure to decide).
func AsRefusal(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}
