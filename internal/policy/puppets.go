package policy

import (
	"fmt"
	"regexp"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/directory"
)

// Puppets are the users an application service (a bridge) creates for
// the people of another network: mautrix bridges call them ghosts. On a
// health hub a puppet stands for a practitioner of the directory, so it
// is subject to exactly the same decision as the practitioner's own
// account: a puppet of someone inactive, unknown or of a profession not
// allowed is refused, and its display name is the directory's.
//
// Which practitioner a puppet stands for is read from its user ID, with
// the appservice's exclusive user namespace: the namespace's one capture
// group is the idNat. bridges/appservice derives that pattern from the
// registration file (a namespace such as "@whatsapp_.*:hub.example" has
// its one wildcard run captured, so @whatsapp_810001045367:hub.example is
// the puppet of practitioner 810001045367).
//
// A puppet also needs its practitioner's consent to the appservice
// (SetPuppetConsents): without it, it is refused and shown under no
// directory name.
//
// The appservice's own accounts (its sender, a bridge bot) are not
// puppets: they are applicative service accounts under a responsible
// practitioner, registered when the appservice is added.

// PuppetNamespace is one appservice user namespace whose user IDs are
// puppets of practitioners.
type PuppetNamespace struct {
	// Appservice is the registration ID, for messages.
	Appservice string
	// Pattern is searched in the full user ID; its only capture group is
	// the idNat.
	Pattern *regexp.Regexp
}

// SetPuppetNamespaces replaces the puppet namespaces (every appservice's).
// A pattern without exactly one capture group is refused: it could not
// say whose puppet a user is.
func (e *Engine) SetPuppetNamespaces(list []PuppetNamespace) error {
	for _, ns := range list {
		if ns.Pattern == nil || ns.Pattern.NumSubexp() != 1 {
			return fmt.Errorf("policy: puppet namespace of %s: the pattern needs exactly one capture group (the idNat)", ns.Appservice)
		}
	}
	cp := append([]PuppetNamespace(nil), list...)
	e.puppets.Store(&cp)
	return nil
}

// PuppetOf reports whether u is an appservice's puppet, and of whom: the
// captured idNat (checked against the idNat grammar, not the directory)
// and the appservice. A user ID in a puppet namespace whose captured
// part is not an idNat is a puppet of nobody: err says so.
func (e *Engine) PuppetOf(u id.UserID) (idnat, appservice string, ok bool, err error) {
	list := e.puppets.Load()
	if list == nil {
		return "", "", false, nil
	}
	for _, ns := range *list {
		m := ns.Pattern.FindStringSubmatch(string(u))
		if m == nil {
			continue
		}
		if _, _, perr := directory.ParseIDNat(m[1]); perr != nil {
			return "", ns.Appservice, true, &Refusal{Code: NotAPractitionerID, Subject: string(u)}
		}
		return m[1], ns.Appservice, true, nil
	}
	return "", "", false, nil
}

// puppetSubject is SubjectOf's answer for a puppet; ok is false when u is
// in no puppet namespace.
func (e *Engine) puppetSubject(u id.UserID) (sub Subject, ok bool, err error) {
	idnat, as, ok, err := e.PuppetOf(u)
	if !ok || err != nil {
		return Subject{}, ok, err
	}
	return Subject{IDNat: idnat, Appservice: as}, true, nil
}

// PuppetConsent is a practitioner's consent that an appservice's puppets
// stand for them (a binding of kind appservice, internal/consent).
type PuppetConsent struct {
	Appservice string
	IDNat      string
}

// SetPuppetConsents replaces the consents. A puppet of a practitioner who
// did not consent to its appservice is refused (ConsentRequired) and gets
// no directory name: an appservice cannot borrow a practitioner's
// identity by naming a user after their idNat.
func (e *Engine) SetPuppetConsents(list []PuppetConsent) {
	m := make(map[PuppetConsent]bool, len(list))
	for _, c := range list {
		m[c] = true
	}
	e.consents.Store(&m)
}

// Consented reports whether the practitioner consented to the
// appservice's puppets standing for them.
func (e *Engine) Consented(appservice, idnat string) bool {
	m := e.consents.Load()
	return m != nil && (*m)[PuppetConsent{Appservice: appservice, IDNat: idnat}]
}
