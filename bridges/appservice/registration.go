package appservice

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Registration is an application service registration file, as the spec
// defines it (the YAML every appservice ships, e.g. what a mautrix bridge
// writes with -g). The JSON form, without the two tokens, is what the
// store keeps.
type Registration struct {
	ID  string `json:"id"`
	URL string `json:"url,omitempty"` // empty: the appservice wants no traffic
	// ASToken is presented by the appservice; HSToken by the hub. Neither
	// is ever serialised to JSON.
	ASToken         string     `json:"-"`
	HSToken         string     `json:"-"`
	SenderLocalpart string     `json:"sender_localpart"`
	RateLimited     *bool      `json:"rate_limited,omitempty"`
	Protocols       []string   `json:"protocols,omitempty"`
	Namespaces      Namespaces `json:"namespaces"`
	// ReceiveEphemeral is receive_ephemeral or its unstable name
	// de.sorunome.msc2409.push_ephemeral.
	ReceiveEphemeral bool `json:"receive_ephemeral,omitempty"`
}

// Namespaces are the user IDs, room aliases and room IDs an appservice is
// interested in (and, when exclusive, owns).
type Namespaces struct {
	Users   []Namespace `json:"users,omitempty"`
	Aliases []Namespace `json:"aliases,omitempty"`
	Rooms   []Namespace `json:"rooms,omitempty"`
}

// Namespace is one regular expression of a namespace. As the spec says, it
// is not anchored: it matches an ID if it matches anywhere in it.
type Namespace struct {
	Exclusive bool   `json:"exclusive"`
	Regex     string `json:"regex"`
}

// minTokenLength: both tokens are bearer secrets guarding a whole bridge's
// worth of accounts; shorter random strings are guessable offline.
const minTokenLength = 32

var validID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)

// ParseRegistration reads a registration file. Type errors name the field
// (namespaces.users[1].exclusive: …). Keys the hub does not act on are
// returned as notes, not refused: registration files carry extensions
// (MSC3202, MSC4190 …) that other homeservers understand. Validate checks
// the values.
func ParseRegistration(data []byte) (*Registration, []string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("registration: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, nil, errors.New("registration: the file is empty")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, nil, errors.New("registration: the file must be a YAML mapping (id: …, url: …)")
	}
	reg := &Registration{}
	var notes []string
	var errs []error
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i].Value, root.Content[i+1]
		if seen[key] {
			errs = append(errs, fmt.Errorf("%s: given twice", key))
			continue
		}
		seen[key] = true
		var err error
		switch key {
		case "id":
			err = decodeString(val, &reg.ID)
		case "url":
			// null is the spec's "no traffic".
			if val.Tag != "!!null" {
				err = decodeString(val, &reg.URL)
			}
		case "as_token":
			err = decodeString(val, &reg.ASToken)
		case "hs_token":
			err = decodeString(val, &reg.HSToken)
		case "sender_localpart":
			err = decodeString(val, &reg.SenderLocalpart)
		case "rate_limited":
			var b bool
			if err = val.Decode(&b); err == nil {
				reg.RateLimited = &b
			}
		case "protocols":
			if err = val.Decode(&reg.Protocols); err == nil && len(reg.Protocols) > 0 {
				notes = append(notes, "protocols: third-party protocol lookups are not served by this hub")
			}
		case "receive_ephemeral", "de.sorunome.msc2409.push_ephemeral":
			var b bool
			err = val.Decode(&b)
			reg.ReceiveEphemeral = reg.ReceiveEphemeral || b
		case "namespaces":
			var nerrs []error
			reg.Namespaces, nerrs, notes = decodeNamespaces(val, notes)
			errs = append(errs, nerrs...)
		default:
			notes = append(notes, fmt.Sprintf("%s: not used by this hub (ignored)", key))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, yamlErr(err)))
		}
	}
	if len(errs) > 0 {
		return nil, notes, errors.Join(errs...)
	}
	return reg, notes, nil
}

// decodeString refuses non-scalars and YAML's non-string scalars, which
// would otherwise be read as their text (a token of `yes` is a mistake).
func decodeString(n *yaml.Node, dst *string) error {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int") {
		return fmt.Errorf("must be a string, not %s", describe(n))
	}
	*dst = n.Value
	return nil
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strings.TrimPrefix(n.Tag, "!!") + " " + fmt.Sprintf("%q", n.Value)
}

// yamlErr drops yaml.v3's "yaml: unmarshal errors:" header: the field name
// put in front says more.
func yamlErr(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return errors.New(strings.Join(te.Errors, "; "))
	}
	return err
}

func decodeNamespaces(n *yaml.Node, notes []string) (Namespaces, []error, []string) {
	var ns Namespaces
	var errs []error
	if n.Tag == "!!null" {
		return ns, nil, notes
	}
	if n.Kind != yaml.MappingNode {
		return ns, []error{fmt.Errorf("namespaces: must be a mapping of users, aliases, rooms, not %s", describe(n))}, notes
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i].Value, n.Content[i+1]
		var dst *[]Namespace
		switch key {
		case "users":
			dst = &ns.Users
		case "aliases":
			dst = &ns.Aliases
		case "rooms":
			dst = &ns.Rooms
		default:
			notes = append(notes, fmt.Sprintf("namespaces.%s: not a namespace kind (ignored)", key))
			continue
		}
		if val.Tag == "!!null" {
			continue
		}
		if val.Kind != yaml.SequenceNode {
			errs = append(errs, fmt.Errorf("namespaces.%s: must be a list, not %s", key, describe(val)))
			continue
		}
		for j, item := range val.Content {
			field := fmt.Sprintf("namespaces.%s[%d]", key, j)
			if item.Kind != yaml.MappingNode {
				errs = append(errs, fmt.Errorf("%s: must be a mapping with exclusive and regex, not %s", field, describe(item)))
				continue
			}
			var one Namespace
			var hasExclusive, hasRegex bool
			for k := 0; k+1 < len(item.Content); k += 2 {
				switch item.Content[k].Value {
				case "exclusive":
					hasExclusive = true
					if err := item.Content[k+1].Decode(&one.Exclusive); err != nil {
						errs = append(errs, fmt.Errorf("%s.exclusive: %w", field, yamlErr(err)))
					}
				case "regex":
					hasRegex = true
					if err := decodeString(item.Content[k+1], &one.Regex); err != nil {
						errs = append(errs, fmt.Errorf("%s.regex: %w", field, err))
					}
				default:
					notes = append(notes, fmt.Sprintf("%s.%s: not used by this hub (ignored)", field, item.Content[k].Value))
				}
			}
			if !hasExclusive {
				errs = append(errs, fmt.Errorf("%s.exclusive: required (true or false)", field))
			}
			if !hasRegex {
				errs = append(errs, fmt.Errorf("%s.regex: required", field))
			}
			*dst = append(*dst, one)
		}
	}
	return ns, errs, notes
}

// Validate checks a registration for serverName and compiles what the
// hub needs from it. It lists every problem at once, each with its field.
func (reg *Registration) Validate(serverName string) (*Compiled, error) {
	return reg.validate(serverName, true)
}

func (reg *Registration) validate(serverName string, checkTokens bool) (*Compiled, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if reg.ID == "" {
		bad("id", "required")
	} else if !validID.MatchString(reg.ID) {
		bad("id", "%q: use 1 to 100 letters, digits, '.', '_' or '-' (it appears in URLs and stream names)", reg.ID)
	}
	if reg.URL != "" {
		u, err := url.Parse(reg.URL)
		switch {
		case err != nil:
			bad("url", "%v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			bad("url", "%q must be an http:// or https:// URL (or null for no traffic)", reg.URL)
		case u.Host == "":
			bad("url", "%q has no host", reg.URL)
		case u.RawQuery != "" || u.Fragment != "":
			bad("url", "%q must not have a query or fragment", reg.URL)
		}
	}
	for _, t := range []struct{ field, val string }{{"as_token", reg.ASToken}, {"hs_token", reg.HSToken}} {
		switch {
		case !checkTokens:
		case t.val == "":
			bad(t.field, "required")
		case len(t.val) < minTokenLength:
			bad(t.field, "too short (%d characters): use at least %d random characters", len(t.val), minTokenLength)
		case strings.ContainsAny(t.val, " \t\r\n"):
			bad(t.field, "must not contain white space")
		}
	}
	if reg.ASToken != "" && reg.ASToken == reg.HSToken {
		bad("hs_token", "must differ from as_token: each side must not be able to pose as the other")
	}
	if reg.SenderLocalpart == "" {
		bad("sender_localpart", "required")
	} else if err := validHistoricalLocalpart(reg.SenderLocalpart); err != nil {
		bad("sender_localpart", "%v", err)
	} else if strings.Trim(reg.SenderLocalpart, "0123456789") == "" {
		// The same rule as for namespaces: @<digits>:server is a
		// practitioner's own account, never an appservice's.
		bad("sender_localpart", "%q could be a practitioner's own account (@<idNat>:%s); choose a name of the appservice's own", reg.SenderLocalpart, serverName)
	}
	c := &Compiled{Registration: *reg, sender: "@" + reg.SenderLocalpart + ":" + serverName}
	practitioners := `^@[0-9]+:` + regexp.QuoteMeta(serverName) + `$`
	compile := func(kind string, list []Namespace) []compiledNS {
		var out []compiledNS
		for i, ns := range list {
			field := fmt.Sprintf("namespaces.%s[%d].regex", kind, i)
			if ns.Regex == "" {
				bad(field, "must not be empty (it would match every ID)")
				continue
			}
			re, err := regexp.Compile(ns.Regex)
			if err != nil {
				bad(field, "%v", err)
				continue
			}
			cn := compiledNS{Namespace: ns, re: re}
			if kind == "users" && ns.Exclusive {
				// The hub's own rule: practitioners' accounts are theirs,
				// never an appservice's.
				if over, err := Overlaps(ns.Regex, practitioners); err != nil || over {
					bad(field, "%q could match a practitioner's own account (@<idNat>:%s); an appservice may only own IDs with a prefix of its own", ns.Regex, serverName)
					continue
				}
				if lit, ok := literalID(re); ok {
					if !strings.HasSuffix(lit, ":"+serverName) || !strings.HasPrefix(lit, "@") {
						bad(field, "%q names %s, which is not a user of %s", ns.Regex, lit, serverName)
						continue
					}
					cn.literal = lit
				} else if p, err := puppetPattern(ns.Regex); err != nil {
					bad(field, "%q: %v", ns.Regex, err)
					continue
				} else {
					cn.puppet = p
				}
			}
			out = append(out, cn)
		}
		return out
	}
	c.users = compile("users", reg.Namespaces.Users)
	c.aliases = compile("aliases", reg.Namespaces.Aliases)
	c.rooms = compile("rooms", reg.Namespaces.Rooms)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// validHistoricalLocalpart accepts the spec's historical user ID grammar
// (printable ASCII but ':'), because appservices generate such senders:
// a mautrix bridge writes 32 random letters of both cases.
func validHistoricalLocalpart(lp string) error {
	if len(lp) > 200 {
		return errors.New("longer than 200 characters")
	}
	for _, c := range lp {
		if c < 0x21 || c > 0x7e || c == ':' {
			return fmt.Errorf("%q: character %q is not allowed in a user ID", lp, c)
		}
	}
	return nil
}

// ServiceLocalparts are the appservice's own accounts: its sender and
// every user its exclusive namespaces name literally (a mautrix bridge's
// bot). They are registered as applicative service accounts.
func (c *Compiled) ServiceLocalparts() []string {
	out := []string{c.SenderLocalpart}
	for _, ns := range c.users {
		if ns.literal != "" {
			lp := strings.TrimPrefix(ns.literal[:strings.IndexByte(ns.literal, ':')], "@")
			if !slices.Contains(out, lp) {
				out = append(out, lp)
			}
		}
	}
	return out
}
