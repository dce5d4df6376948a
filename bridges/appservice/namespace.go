package appservice

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"

	"maunium.net/go/mautrix/id"
)

// Compiled is a validated registration with its namespaces compiled.
type Compiled struct {
	Registration
	sender  string // the sender's full user ID
	users   []compiledNS
	aliases []compiledNS
	rooms   []compiledNS
}

type compiledNS struct {
	Namespace
	re *regexp.Regexp
	// For an exclusive user namespace, exactly one of these is set:
	// literal, the one user ID it names (a bridge bot); puppet, the
	// pattern whose only capture group is a puppet's idNat.
	literal string
	puppet  *regexp.Regexp
}

// Sender is the appservice's own user (sender_localpart).
func (c *Compiled) Sender() id.UserID { return id.UserID(c.sender) }

// IsUser reports whether u is one of the appservice's users: its sender or
// a user of any of its user namespaces. Their rooms' events are pushed to
// the appservice.
func (c *Compiled) IsUser(u string) bool {
	if u == c.sender {
		return true
	}
	for _, ns := range c.users {
		if ns.re.MatchString(u) {
			return true
		}
	}
	return false
}

// Owns reports whether the appservice may act as u (masquerade, register,
// log in): its sender, or a user of one of its exclusive namespaces.
// Non-exclusive namespaces only say what the appservice wants to hear
// about: on a health hub, letting software speak as an account it does
// not own exclusively (a practitioner's own, say) would defeat the trust
// space.
func (c *Compiled) Owns(u string) bool {
	if u == c.sender {
		return true
	}
	for _, ns := range c.users {
		if ns.Exclusive && ns.re.MatchString(u) {
			return true
		}
	}
	return false
}

// Exclusive reports whether u is in one of the appservice's exclusive
// user namespaces, which nobody else may register.
func (c *Compiled) Exclusive(u string) bool {
	for _, ns := range c.users {
		if ns.Exclusive && ns.re.MatchString(u) {
			return true
		}
	}
	return false
}

// MatchesRoom reports whether the room ID is in a room namespace.
func (c *Compiled) MatchesRoom(roomID string) bool {
	for _, ns := range c.rooms {
		if ns.re.MatchString(roomID) {
			return true
		}
	}
	return false
}

// MatchesAlias reports whether the alias is in an alias namespace.
func (c *Compiled) MatchesAlias(alias string) bool {
	for _, ns := range c.aliases {
		if ns.re.MatchString(alias) {
			return true
		}
	}
	return false
}

// HasAliasNamespaces tells whether MatchesAlias can ever be true.
func (c *Compiled) HasAliasNamespaces() bool { return len(c.aliases) > 0 }

// PuppetPatterns are the patterns (one capture group: the idNat) of the
// exclusive user namespaces that are not literal user IDs.
func (c *Compiled) PuppetPatterns() []*regexp.Regexp {
	var out []*regexp.Regexp
	for _, ns := range c.users {
		if ns.puppet != nil {
			out = append(out, ns.puppet)
		}
	}
	return out
}

// literalID returns the one string re matches, when re (anchored at both
// ends) matches nothing else: how a registration names a bot account
// (^@whatsappbot:hub\.example$).
func literalID(re *regexp.Regexp) (string, bool) {
	tree, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return "", false
	}
	tree = tree.Simplify()
	if tree.Op != syntax.OpConcat || len(tree.Sub) != 3 ||
		tree.Sub[0].Op != syntax.OpBeginText || tree.Sub[2].Op != syntax.OpEndText ||
		tree.Sub[1].Op != syntax.OpLiteral || tree.Sub[1].Flags&syntax.FoldCase != 0 {
		return "", false
	}
	return string(tree.Sub[1].Rune), true
}

// puppetPattern turns an exclusive user namespace into the pattern the
// policy engine reads a puppet's idNat with:
//
//   - a regex with exactly one capture group says where the idNat is
//     (^@wa_(8[0-9]{11}):hub\.example$);
//   - a regex without groups and with exactly one run of any characters
//     (.* or .+) has that run captured: it is the convention of every
//     bridge whose user IDs are a prefix, the remote ID and the server
//     (^@whatsapp_.*:hub\.example$, what mautrix bridges register), so a
//     bridge whose remote IDs are idNats needs no special file.
//
// Anything else could not say whose puppet a user is, and is refused.
func puppetPattern(expr string) (*regexp.Regexp, error) {
	tree, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, err
	}
	switch n := tree.MaxCap(); {
	case n == 1:
		return regexp.Compile(expr)
	case n > 1:
		return nil, fmt.Errorf("has %d capture groups; an exclusive user namespace needs one, capturing the idNat of the practitioner each user stands for", n)
	}
	var runs []*syntax.Regexp
	var walk func(r *syntax.Regexp)
	walk = func(r *syntax.Regexp) {
		if (r.Op == syntax.OpStar || r.Op == syntax.OpPlus) && len(r.Sub) == 1 &&
			(r.Sub[0].Op == syntax.OpAnyCharNotNL || r.Sub[0].Op == syntax.OpAnyChar) {
			runs = append(runs, r)
			return
		}
		for _, s := range r.Sub {
			walk(s)
		}
	}
	walk(tree)
	if len(runs) != 1 {
		return nil, errors.New("an exclusive user namespace must show where the practitioner's idNat is in the user ID: " +
			"one capture group, or (the usual @prefix_.*:server) exactly one .* or .+ run")
	}
	// Wrap the run in a capture group, in place, and print the tree back.
	run := *runs[0]
	// The node's Sub may point into its own inline storage, which the
	// assignment below overwrites: give the copy its own.
	run.Sub = append([]*syntax.Regexp(nil), runs[0].Sub...)
	*runs[0] = syntax.Regexp{Op: syntax.OpCapture, Cap: 1, Sub: []*syntax.Regexp{&run}}
	return regexp.Compile(tree.String())
}
