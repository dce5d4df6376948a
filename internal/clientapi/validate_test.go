package clientapi

import (
	"strings"
	"testing"
)

func TestParseFilter(t *testing.T) {
	cases := []struct {
		name, filter string
		code         string // "" = valid
		limit        int
	}{
		{"empty", `{}`, "", 0},
		{"Element's", `{"room":{"timeline":{"limit":20},"state":{"lazy_load_members":true}}}`, "", 20},
		{"everything typed right", `{"event_fields":["content.body"],"event_format":"client","presence":{"limit":0,"types":["m.presence"]},
			"account_data":{"not_types":["x"]},"room":{"include_leave":false,"rooms":["!a:b"],"not_rooms":[],
			"ephemeral":{"limit":5,"senders":["@a:b"],"not_senders":[]},"account_data":{"limit":1},
			"timeline":{"limit":7,"contains_url":true,"unread_thread_notifications":false}}}`, "", 7},
		{"nulls", `{"room":{"timeline":{"limit":null,"types":null}}}`, "", 0},
		{"unknown fields are extensions", `{"org.example":{"limit":"x"},"room":{"timeline":{"org.example.x":1}}}`, "", 0},
		{"largest integer", `{"room":{"timeline":{"limit":9007199254740991}}}`, "", 1<<31 - 1},
		{"above the largest integer", `{"room":{"timeline":{"limit":9007199254740992}}}`, "M_BAD_JSON", 0},
		{"not JSON", `{"room"`, "M_NOT_JSON", 0},
		{"array", `[]`, "M_BAD_JSON", 0},
		{"string limit", `{"room":{"timeline":{"limit":"20"}}}`, "M_BAD_JSON", 0},
		{"float limit", `{"room":{"timeline":{"limit":20.0}}}`, "M_BAD_JSON", 0},
		{"exponent limit", `{"room":{"timeline":{"limit":2e1}}}`, "M_BAD_JSON", 0},
		{"negative limit", `{"room":{"state":{"limit":-5}}}`, "M_BAD_JSON", 0},
		{"bool limit", `{"account_data":{"limit":true}}`, "M_BAD_JSON", 0},
		{"types a string", `{"presence":{"types":"m.presence"}}`, "M_BAD_JSON", 0},
		{"senders of numbers", `{"room":{"ephemeral":{"senders":[1]}}}`, "M_BAD_JSON", 0},
		{"room a string", `{"room":"all"}`, "M_BAD_JSON", 0},
		{"event_format", `{"event_format":"xml"}`, "M_BAD_JSON", 0},
		{"event_fields of objects", `{"event_fields":[{}]}`, "M_BAD_JSON", 0},
		{"too large", `{"event_fields":["` + strings.Repeat("a", maxFilterBytes) + `"]}`, "M_TOO_LARGE", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, e := parseFilter([]byte(c.filter))
			switch {
			case c.code == "" && e != nil:
				t.Fatalf("refused: %v", e)
			case c.code != "" && (e == nil || e.ErrCode != c.code):
				t.Fatalf("got %v, want %s", e, c.code)
			case c.code == "" && f.TimelineLimit != c.limit:
				t.Fatalf("timeline limit %d, want %d", f.TimelineLimit, c.limit)
			}
		})
	}
}

func TestProfileValues(t *testing.T) {
	cases := []struct {
		field, value string
		ok           bool
	}{
		{"avatar_url", "", true},
		{"avatar_url", "mxc://hub.test/AbC_-09", true},
		{"avatar_url", "mxc://[::1]:8448/abc", false}, // the media grammar has no IPv6 servers
		{"avatar_url", "mxc://hub.test:8448/abc", true},
		{"avatar_url", "mxc://hub.test/" + strings.Repeat("a", MaxAvatarURLBytes-len("mxc://hub.test/")), true},
		{"avatar_url", "mxc://hub.test/" + strings.Repeat("a", MaxAvatarURLBytes-len("mxc://hub.test/")+1), false},
		{"avatar_url", "http://hub.test/abc", false},
		{"avatar_url", "mxc://hub.test/a b", false},
		{"avatar_url", "mxc://hub.test/a/b", false},
		{"avatar_url", "mxc:///abc", false},
		{"avatar_url", "MXC://hub.test/abc", false},
		{"displayname", "", true},
		{"displayname", "Hélène Fontenelle - Médecin", true},
		{"displayname", strings.Repeat("é", MaxDisplayNameRunes), true},
		{"displayname", strings.Repeat("é", MaxDisplayNameRunes+1), false},
		{"displayname", "a\x00b", false},
		{"displayname", "line\nbreak", false},
	}
	for _, c := range cases {
		if e := checkProfileValue(c.field, c.value); (e == nil) != c.ok {
			t.Errorf("%s %.40q: %v, want ok=%v", c.field, c.value, e, c.ok)
		} else if e != nil && e.ErrCode != "M_INVALID_PARAM" {
			t.Errorf("%s %.40q: %s, want M_INVALID_PARAM", c.field, c.value, e.ErrCode)
		}
	}
	// What goes into member events from values stored without the checks.
	if got := safeAvatar("mxc://hub.test/" + strings.Repeat("a", 70_000)); got != "" {
		t.Errorf("over-long avatar kept: %.40q", got)
	}
	if got := safeDisplayName(strings.Repeat("x", 70_000) + "\x00"); len([]rune(got)) != MaxDisplayNameRunes || strings.ContainsRune(got, 0) {
		t.Errorf("display name not bounded: %d runes", len([]rune(got)))
	}
}

func TestAliasProblem(t *testing.T) {
	cases := []struct {
		alias string
		ok    bool
	}{
		{"#room:hub.test", true},
		{"#cardio-garde_2:hub.test:8448", true},
		{"#unicodé:hub.test", true},
		{"#" + strings.Repeat("a", 255-len("#:hub.test")) + ":hub.test", true},
		{"#" + strings.Repeat("a", 256-len("#:hub.test")) + ":hub.test", false},
		{"room:hub.test", false},
		{"#:hub.test", false},
		{"#room", false},
		{"#room:", false},
		{"#a b:hub.test", false},
		{"#a\u00a0b:hub.test", false}, // no-break space
		{"#a\x7fb:hub.test", false},
		{"#a\x00:hub.test", false},
		{"#a:b:hub.test", false},
		{"#a:hub test", false},
		{"#\xff:hub.test", false},
	}
	for _, c := range cases {
		if p := aliasProblem(c.alias); (p == "") != c.ok {
			t.Errorf("%q: %q, want ok=%v", c.alias, p, c.ok)
		}
	}
}

func TestSearchTerm(t *testing.T) {
	for raw, want := range map[string]string{
		"  Bob  Test ":        "Bob Test",
		"@810001045367:hub":   "810001045367",
		"@":                   "",
		":":                   "",
		":hub.test":           "",
		"bo\x00b":             "bo b",
		"\x1b[31mred":         "[31mred",
		"%_":                  "%_",
		"Hélène":              "Hélène",
		"a\tb\nc":             "a b c",
		"\xff":                "",
		"cardiologie  lyon  ": "cardiologie lyon",
	} {
		if got := searchTerm(raw); got != want {
			t.Errorf("searchTerm(%q) = %q, want %q", raw, got, want)
		}
	}
}
