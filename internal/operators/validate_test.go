package operators

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateServerName(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"example.org", true},
		{"matrix.example.org:8448", true},
		{"localhost", true},
		{"localhost:8008", true},
		{"my-hub.example", true},
		{"1.2.3.4", true},
		{"1.2.3.4:8448", true},
		{"[2001:db8::1]", true},
		{"[2001:db8::1]:8448", true},
		{"xn--hpital-fsa.example", true}, // IDN, in its ASCII form

		{"", false},
		{"Example.org", false},                         // one spelling per server: lowercase
		{"example.org.", false},                        // trailing dot
		{"example..org", false},                        // empty label
		{"-example.org", false},                        // label starting with '-'
		{"example-.org", false},                        // label ending with '-'
		{"exa_mple.org", false},                        // underscore
		{"hôpital.example", false},                     // Unicode, not ASCII
		{"example.org:", false},                        // empty port
		{"example.org:0", false},                       // port 0
		{"example.org:65536", false},                   // port too large
		{"example.org:08448", false},                   // leading zero
		{"example.org:http", false},                    // service name
		{"example.org/path", false},                    // path
		{"https://example.org", false},                 // URL, not a server name
		{"2001:db8::1", false},                         // IPv6 without brackets
		{"[2001:DB8::1]", false},                       // IPv6 not canonical
		{"[2001:db8:0::1]", false},                     // IPv6 not canonical
		{"[::ffff:1.2.3.4]", false},                    // IPv4-mapped: write the IPv4
		{"[fe80::1%eth0]", false},                      // zone
		{"[2001:db8::1", false},                        // unclosed
		{"[2001:db8::1]x", false},                      // junk after ]
		{"1.2.3.256", false},                           // not an IPv4 address
		{"01.2.3.4", false},                            // leading zero in IPv4
		{"1.2.3", false},                               // digits only, not IPv4
		{strings.Repeat("a", 64) + ".example", false},  // label > 63
		{strings.Repeat("a.", 128) + "example", false}, // > 255
	} {
		err := ValidateServerName(c.in)
		if c.ok != (err == nil) {
			t.Errorf("ValidateServerName(%q) = %v, want ok=%v", c.in, err, c.ok)
		}
		var ve *ValidationError
		if err != nil && (!errors.As(err, &ve) || ve.Field != FieldServerNames || !strings.Contains(err.Error(), "server_names")) {
			t.Errorf("ValidateServerName(%q): error %v does not name the field", c.in, err)
		}
	}
}

func TestValidateID(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"acme", true},
		{"a", true},
		{"0day", true},
		{"chu-nord.gh_2", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"Acme", false},
		{"-acme", false},
		{".acme", false},
		{"_acme", false},
		{"ac me", false},
		{"acmé", false},
		{"acme/1", false},
		{"acme:1", false},
	} {
		if err := ValidateID(c.in); c.ok != (err == nil) {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", c.in, err, c.ok)
		}
	}
}

func TestValidateContact(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"security@acme.example", true},
		{"first.last+ops@chu-nord.example", true},
		{"https://acme.example/security", true},
		{"http://acme.example", true},
		{"", false},
		{"ACME <security@acme.example>", false}, // bare address only
		{"security@localhost", false},           // no domain
		{"security", false},
		{"+33 1 23 45 67 89", false},
		{"ftp://acme.example", false},
		{"https://", false},
		{"https://user:pw@acme.example", false}, // credentials in a contact
		{"javascript://alert(1)", false},
		{"security@acme.example\nBcc: x@y.example", false},
		{strings.Repeat("a", 310) + "@acme.example", false},
	} {
		if err := ValidateContact(c.in); c.ok != (err == nil) {
			t.Errorf("ValidateContact(%q) = %v, want ok=%v", c.in, err, c.ok)
		}
	}
}
