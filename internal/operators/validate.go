package operators

import (
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Field names in ValidationError are the admin API's JSON names, so the
// API can hand them to clients as they are; the CLI maps them to flags.
const (
	FieldID          = "id"
	FieldName        = "name"
	FieldServerNames = "server_names"
	FieldContact     = "contact"
	FieldReason      = "reason"
)

// Limits on free text: generous for people, small enough that a listing
// of every operator stays a small response.
const (
	maxIDLen      = 64
	maxNameLen    = 200
	maxContactLen = 320
	maxReasonLen  = 1000
	maxServers    = 100
)

// ValidationError says which field of a request is wrong and why.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return "invalid " + e.Field + ": " + e.Reason }

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ValidateID checks an operator ID: a lowercase slug of 1 to 64
// characters, [a-z0-9][a-z0-9._-]*. IDs appear in logs, audit records and
// URLs, so they are kept to characters that need no escaping anywhere.
func ValidateID(id string) error {
	if id == "" {
		return invalid(FieldID, "required")
	}
	if len(id) > maxIDLen {
		return invalid(FieldID, "longer than %d characters", maxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return invalid(FieldID, "%q is not a lowercase slug: [a-z0-9] first, then [a-z0-9._-]", id)
		}
	}
	return nil
}

// ValidateServerName checks a Matrix server name (the spec's grammar:
// hostname, IPv4 literal or bracketed IPv6 literal, optional :port),
// tightened so that each server has exactly one spelling: lowercase, no
// empty labels or trailing dot, no leading zeros in the port, IPv6 in its
// canonical form. Server names are compared as exact strings when traffic
// is checked, so a second spelling would be a second, unlisted server.
func ValidateServerName(s string) error {
	if err := serverNameProblem(s); err != "" {
		return invalid(FieldServerNames, "%q: %s", s, err)
	}
	return nil
}

func serverNameProblem(s string) string {
	if s == "" {
		return "empty"
	}
	if len(s) > 255 {
		return "longer than 255 characters"
	}
	host, port, hasPort := s, "", false
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "unclosed '[' in an IPv6 literal"
		}
		host = s[1:end]
		if rest := s[end+1:]; rest != "" {
			if rest[0] != ':' {
				return fmt.Sprintf("unexpected %q after the IPv6 literal", rest)
			}
			port, hasPort = rest[1:], true
		}
		addr, err := netip.ParseAddr(host)
		if err != nil || !addr.Is6() || addr.Zone() != "" || addr.Is4In6() {
			return fmt.Sprintf("%q is not an IPv6 address", host)
		}
		if addr.String() != host {
			return fmt.Sprintf("write the IPv6 address in its canonical form [%s]", addr)
		}
	} else {
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			host, port, hasPort = s[:i], s[i+1:], true
		}
		if strings.Contains(host, ":") {
			return "an IPv6 literal must be in brackets, like [2001:db8::1]:8448"
		}
		if p := hostProblem(host); p != "" {
			return p
		}
	}
	if hasPort {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return fmt.Sprintf("port %q is not a number from 1 to 65535 without leading zeros", port)
		}
	}
	return ""
}

func hostProblem(h string) string {
	if h == "" {
		return "empty host name"
	}
	if strings.ToLower(h) != h {
		return "must be lowercase"
	}
	allDigits := true
	for label := range strings.SplitSeq(h, ".") {
		if label == "" {
			return "empty label (double or trailing dot)"
		}
		if len(label) > 63 {
			return fmt.Sprintf("label %q longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Sprintf("label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c == '-':
				allDigits = false
			default:
				return fmt.Sprintf("character %q not allowed in a host name", rune(c))
			}
		}
	}
	// Digits and dots only is an IPv4 literal, and must be a real one:
	// "10.0.0.256" or "010.0.0.1" are typos, not host names.
	if allDigits {
		addr, err := netip.ParseAddr(h)
		if err != nil || !addr.Is4() || addr.String() != h {
			return fmt.Sprintf("%q is not an IPv4 address", h)
		}
	}
	return ""
}

// ValidateContact checks a contact: an e-mail address (bare, without a
// display name) or an http(s) URL. The contact is who the hub's operators
// call when a bridge misbehaves, so it has to be something one can use.
func ValidateContact(c string) error {
	if c == "" {
		return invalid(FieldContact, "required (an e-mail address or an https URL)")
	}
	if len(c) > maxContactLen {
		return invalid(FieldContact, "longer than %d characters", maxContactLen)
	}
	if p := textProblem(c); p != "" {
		return invalid(FieldContact, "%s", p)
	}
	if strings.Contains(c, "://") {
		u, err := url.Parse(c)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			return invalid(FieldContact, "%q is not an http(s) URL", c)
		}
		return nil
	}
	a, err := mail.ParseAddress(c)
	if err != nil || a.Name != "" || a.Address != c || !strings.Contains(c[strings.LastIndexByte(c, '@')+1:], ".") {
		return invalid(FieldContact, "%q is neither an e-mail address (name@domain.example) nor an http(s) URL", c)
	}
	return nil
}

// textProblem refuses what would garble a log line or a table: invalid
// UTF-8 and control characters.
func textProblem(s string) string {
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "contains control characters"
	}
	return ""
}

func validateText(field, s string, maxLen int, required bool) error {
	if s == "" {
		if required {
			return invalid(field, "required")
		}
		return nil
	}
	if utf8.RuneCountInString(s) > maxLen {
		return invalid(field, "longer than %d characters", maxLen)
	}
	if p := textProblem(s); p != "" {
		return invalid(field, "%s", p)
	}
	return nil
}

// normalize trims what a person adds by accident (surrounding blanks),
// sorts the server names and validates every field. It never changes what
// a field means: uppercase server names are refused, not lowered, so what
// is stored is what the operator asked for.
func normalize(o Operator) (Operator, error) {
	o.ID = strings.TrimSpace(o.ID)
	o.Name = strings.TrimSpace(o.Name)
	o.Contact = strings.TrimSpace(o.Contact)
	if err := ValidateID(o.ID); err != nil {
		return o, err
	}
	if err := validateText(FieldName, o.Name, maxNameLen, true); err != nil {
		return o, err
	}
	if len(o.ServerNames) == 0 {
		return o, invalid(FieldServerNames, "at least one server name is required")
	}
	if len(o.ServerNames) > maxServers {
		return o, invalid(FieldServerNames, "more than %d server names", maxServers)
	}
	servers := make([]string, len(o.ServerNames))
	for i, s := range o.ServerNames {
		servers[i] = strings.TrimSpace(s)
		if err := ValidateServerName(servers[i]); err != nil {
			return o, err
		}
	}
	slices.Sort(servers)
	for i := 1; i < len(servers); i++ {
		if servers[i] == servers[i-1] {
			return o, invalid(FieldServerNames, "%q is listed twice", servers[i])
		}
	}
	o.ServerNames = servers
	if err := ValidateContact(o.Contact); err != nil {
		return o, err
	}
	return o, nil
}

func validateReason(reason string, required bool) (string, error) {
	reason = strings.TrimSpace(reason)
	return reason, validateText(FieldReason, reason, maxReasonLen, required)
}

// notOwnServer refuses server names naming the hub itself: the same
// host, whatever the port, compared without regard to case.
func notOwnServer(servers, own []string) error {
	for _, s := range servers {
		for _, o := range own {
			if o != "" && strings.EqualFold(serverHost(s), serverHost(o)) && !distinctLoopbackPorts(s, o) {
				return invalid(FieldServerNames, "%q is this hub's own server name (%s): an operator cannot claim it", s, o)
			}
		}
	}
	return nil
}

// distinctLoopbackPorts reports whether a and b are loopback IP literals
// with different explicit ports: distinct servers on one machine (test
// peers federating over loopback), whose names no DNS can make collide.
func distinctLoopbackPorts(a, b string) bool {
	ha, hb := serverHost(a), serverHost(b)
	if ha == a || hb == b || a == b {
		return false // a name without a port, or the same name
	}
	ip := net.ParseIP(strings.Trim(ha, "[]"))
	return ip != nil && ip.IsLoopback()
}

// serverHost is a server name without its port.
func serverHost(s string) string {
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end > 0 {
			return s[:end+1]
		}
		return s
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return s[:i]
	}
	return s
}
