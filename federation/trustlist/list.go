// Package trustlist is the trust space on the network: the signed,
// versioned list of the Matrix servers the hub federates with, who
// operates each one, and whose word the hub takes about its users.
//
// An authority writes the list in YAML (ParseYAML), signs it into a
// compact JWS with its Ed25519 (or ES256) key (Sign), and publishes the
// JWS as a file or at a URL. Every hub verifies it against the
// authority's public key (Verify) and holds the last valid one (Watcher).
// Nothing unsigned, badly signed or malformed is ever used: the last
// valid list stays in force until its expiry plus a grace period, and
// after that every federation request is refused (fail closed).
package trustlist

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/federation"
)

// Status is a server's standing on the list.
type Status string

// Statuses.
const (
	Active    Status = "active"
	Suspended Status = "suspended"
	Revoked   Status = "revoked"
)

// UserRule says how the hub decides that a remote user may take part.
type UserRule string

// User rules.
const (
	// Directory (the default) admits a remote user only when their
	// localpart is an active idNat in the hub's health directory: the
	// peer's users are practitioners the hub can check itself.
	Directory UserRule = "directory"
	// ServerVouched takes the server's word for its users: any user it
	// hosts may take part. It is how a listed peer whose users are not
	// idNats (a hospital's Element with its own accounts) is declared;
	// the authority vouches for that server's enrolment instead.
	ServerVouched UserRule = "server_vouched"
)

// Server is one entry of the list.
type Server struct {
	// Name is the Matrix server name, exactly as in user IDs
	// ("matrix.vendor.fr", "127.0.0.1:8448").
	Name string `yaml:"name" json:"name"`
	// Operator is the operator's ID in the operator registry
	// (internal/operators).
	Operator string   `yaml:"operator" json:"operator"`
	Status   Status   `yaml:"status" json:"status"`
	Users    UserRule `yaml:"users,omitempty" json:"users,omitempty"`
}

// List is the federation list: the signed document's payload.
type List struct {
	// Version increases with each list the authority issues; a hub never
	// goes back to a lower version than the one in force.
	Version int64     `yaml:"version,omitempty" json:"version"`
	Issued  time.Time `yaml:"issued,omitempty" json:"issued"`
	Expires time.Time `yaml:"expires" json:"expires"`
	Servers []Server  `yaml:"servers" json:"servers"`
}

// MaxServers bounds a list, so a hostile or broken source cannot make the
// hub build an unbounded index.
const MaxServers = 100_000

// ErrInvalid is wrapped by every error about a list's content.
var ErrInvalid = errors.New("invalid federation list")

// ParseYAML reads the authority's source format. Unknown keys are
// refused, and errors name the line, so a typo ("suspend") never becomes
// a silently different list.
func ParseYAML(data []byte) (List, error) {
	var l List
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&l); err != nil {
		return List{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var node yaml.Node
	_ = yaml.Unmarshal(data, &node)
	if err := l.validate(serverLines(&node)); err != nil {
		return List{}, err
	}
	return l, nil
}

// serverLines returns the line of each entry of servers:, for errors.
func serverLines(doc *yaml.Node) []int {
	if doc == nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "servers" && root.Content[i+1].Kind == yaml.SequenceNode {
			var lines []int
			for _, n := range root.Content[i+1].Content {
				lines = append(lines, n.Line)
			}
			return lines
		}
	}
	return nil
}

// Validate checks a decoded list (Verify runs it on every signed list).
func (l *List) Validate() error { return l.validate(nil) }

func (l *List) validate(lines []int) error {
	var errs []error
	where := func(i int) string {
		if i < len(lines) {
			return fmt.Sprintf("line %d: servers[%d]", lines[i], i)
		}
		return fmt.Sprintf("servers[%d]", i)
	}
	if l.Expires.IsZero() {
		errs = append(errs, errors.New("expires: required"))
	}
	if !l.Issued.IsZero() && !l.Expires.IsZero() && !l.Expires.After(l.Issued) {
		errs = append(errs, errors.New("expires: must be after issued"))
	}
	if l.Version < 0 {
		errs = append(errs, errors.New("version: must not be negative"))
	}
	if len(l.Servers) > MaxServers {
		errs = append(errs, fmt.Errorf("servers: %d entries, at most %d", len(l.Servers), MaxServers))
	}
	seen := map[string]bool{}
	for i := range l.Servers {
		s := &l.Servers[i]
		if s.Users == "" {
			s.Users = Directory
		}
		if err := CheckServerName(s.Name); err != nil {
			errs = append(errs, fmt.Errorf("%s: name %q: %w", where(i), s.Name, err))
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("%s: server %q listed twice", where(i), s.Name))
		}
		seen[s.Name] = true
		if strings.TrimSpace(s.Operator) == "" {
			errs = append(errs, fmt.Errorf("%s: operator: required", where(i)))
		}
		switch s.Status {
		case Active, Suspended, Revoked:
		default:
			errs = append(errs, fmt.Errorf("%s: status %q: want active, suspended or revoked", where(i), s.Status))
		}
		switch s.Users {
		case Directory, ServerVouched:
		default:
			errs = append(errs, fmt.Errorf("%s: users %q: want directory or server_vouched", where(i), s.Users))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// CheckServerName applies the Matrix server name grammar (host, IPv4,
// [IPv6], each with an optional port).
func CheckServerName(name string) error {
	host, _, ok := federation.ParseServerName(name)
	if !ok {
		return errors.New("not a Matrix server name")
	}
	if name != strings.ToLower(name) && net.ParseIP(host) == nil {
		// Server names compare exactly; a list in mixed case would never
		// match the lower-case names servers actually use.
		return errors.New("must be lower case")
	}
	return nil
}

// Entry returns the list's entry for a server.
func (l *List) Entry(name string) (Server, bool) {
	for _, s := range l.Servers {
		if s.Name == name {
			return s, true
		}
	}
	return Server{}, false
}
