package appservice

import (
	"encoding/json"
	"strings"
	"testing"
)

const server = "hub.test"

// mautrixFile has the shape of what a mautrix bridgev2 bridge writes with
// -g: a random sender, the bot as a literal exclusive namespace, the
// ghosts as prefix + .* + server, and unstable keys the hub ignores.
const mautrixFile = `id: whatsapp
url: http://127.0.0.1:29318
as_token: aE2xqgQ0tWZ5S9pJmK3nR7yV1cL8dF4hB6oU2iT0wX9zN5eG
hs_token: Zt4Yh1Lr8Kq2Wm6Pn0Bv5Cx3Jd9Fg7Hs2Ak4Ql6Oe8Ui1Ry3T
sender_localpart: Fq8r2KbLw0PzXc5MnV7sTy3Ju1Hg9DeA
rate_limited: false
namespaces:
    users:
        - regex: ^@whatsappbot:hub\.test$
          exclusive: true
        - regex: ^@whatsapp_.*:hub\.test$
          exclusive: true
de.sorunome.msc2409.push_ephemeral: true
receive_ephemeral: true
org.matrix.msc3202: false
`

func TestParseMautrixRegistration(t *testing.T) {
	reg, notes, err := ParseRegistration([]byte(mautrixFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "org.matrix.msc3202") {
		t.Fatalf("notes = %q, want the unknown key noted", notes)
	}
	c, err := reg.Validate(server)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "whatsapp" || !c.ReceiveEphemeral || c.RateLimited == nil || *c.RateLimited {
		t.Fatalf("parsed %+v", c.Registration)
	}
	if got := c.ServiceLocalparts(); len(got) != 2 || got[0] != "Fq8r2KbLw0PzXc5MnV7sTy3Ju1Hg9DeA" || got[1] != "whatsappbot" {
		t.Fatalf("service accounts = %q, want the sender and the bot", got)
	}
	pp := c.PuppetPatterns()
	if len(pp) != 1 {
		t.Fatalf("puppet patterns = %v", pp)
	}
	if m := pp[0].FindStringSubmatch("@whatsapp_810000000017:hub.test"); m == nil || m[1] != "810000000017" {
		t.Fatalf("puppet pattern %s read %q", pp[0], m)
	}
	for u, want := range map[string]bool{
		"@whatsapp_810000000017:hub.test": true, "@whatsappbot:hub.test": true,
		"@Fq8r2KbLw0PzXc5MnV7sTy3Ju1Hg9DeA:hub.test": true, "@810000000017:hub.test": false,
		"@whatsapp_x:other.example": false,
	} {
		if c.Owns(u) != want {
			t.Errorf("Owns(%s) = %v", u, !want)
		}
	}

	// The stored form carries no token.
	raw, err := json.Marshal(c.Registration)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), reg.ASToken) || strings.Contains(string(raw), reg.HSToken) {
		t.Fatalf("stored form leaks a token: %s", raw)
	}
}

func TestRegistrationErrorsNameTheField(t *testing.T) {
	const tokens = "as_token: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nhs_token: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n"
	base := "id: tg\nurl: http://127.0.0.1:9000\n" + tokens + "sender_localpart: tgbot\n"
	cases := []struct {
		name string
		file string
		want []string
	}{
		{"empty", "", []string{"empty"}},
		{"not a mapping", "- a\n- b\n", []string{"must be a YAML mapping"}},
		{"everything missing", "rate_limited: true\n", []string{"id: required", "as_token: required", "hs_token: required", "sender_localpart: required"}},
		{"bad id and url", "id: 'tg bridge'\nurl: ftp://x\n" + tokens + "sender_localpart: b\n", []string{"id: \"tg bridge\"", "url: \"ftp://x\" must be an http"}},
		{"short and equal tokens", "id: tg\nurl: null\nas_token: abc\nhs_token: abc\nsender_localpart: b\n", []string{"as_token: too short", "hs_token: too short", "hs_token: must differ"}},
		{"token of the wrong type", "id: tg\nas_token: [1, 2]\n", []string{"as_token: must be a string, not a list"}},
		{"exclusive not a bool", base + "namespaces:\n  users:\n    - regex: '@tg_.*:hub\\.test'\n      exclusive: sure\n", []string{"namespaces.users[0].exclusive:"}},
		{"exclusive missing", base + "namespaces:\n  users:\n    - regex: '@tg_.*:hub\\.test'\n", []string{"namespaces.users[0].exclusive: required"}},
		{"namespace not a list", base + "namespaces:\n  users: '@tg_.*'\n", []string{"namespaces.users: must be a list"}},
		{"bad regex", base + "namespaces:\n  rooms:\n    - regex: '!(unclosed'\n      exclusive: false\n", []string{"namespaces.rooms[0].regex: error parsing regexp"}},
		{"practitioners' IDs", base + "namespaces:\n  users:\n    - regex: '@8.*:hub\\.test'\n      exclusive: true\n", []string{"namespaces.users[0].regex", "practitioner's own account"}},
		{"no idNat place", base + "namespaces:\n  users:\n    - regex: '@tg_[a-z]+:hub\\.test'\n      exclusive: true\n", []string{"namespaces.users[0].regex", "where the practitioner's idNat is"}},
		{"two captures", base + "namespaces:\n  users:\n    - regex: '@(tg)_(.*):hub\\.test'\n      exclusive: true\n", []string{"2 capture groups"}},
		{"bot of another server", base + "namespaces:\n  users:\n    - regex: '^@bot:elsewhere\\.example$'\n      exclusive: true\n", []string{"not a user of hub.test"}},
		{"given twice", base + "id: again\n", []string{"id: given twice"}},
		{"sender is a practitioner", "id: tg\nurl: null\n" + tokens + "sender_localpart: '810000000017'\n", []string{"sender_localpart", "practitioner's own account"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg, _, err := ParseRegistration([]byte(c.file))
			if err == nil {
				_, err = reg.Validate(server)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestPuppetPattern(t *testing.T) {
	cases := []struct {
		regex, user, idnat string
	}{
		{`^@whatsapp_.*:hub\.test$`, "@whatsapp_810000000017:hub.test", "810000000017"},
		{`@sig_.+:hub\.test`, "@sig_810000000017:hub.test", "810000000017"},
		{`^@wa_(8[0-9]{11})_[a-z]+:hub\.test$`, "@wa_810000000017_cardio:hub.test", "810000000017"},
		{`^@(?:x|y)_.*:hub\.test$`, "@y_810000000025:hub.test", "810000000025"},
	}
	for _, c := range cases {
		p, err := puppetPattern(c.regex)
		if err != nil {
			t.Fatalf("%s: %v", c.regex, err)
		}
		m := p.FindStringSubmatch(c.user)
		if m == nil || m[1] != c.idnat {
			t.Errorf("%s (as %s) read %q from %s, want %s", c.regex, p, m, c.user, c.idnat)
		}
	}
	for _, bad := range []string{`^@a_.*_.*:hub\.test$`, `^@a_[0-9]+:hub\.test$`, `^@(a)(b).*$`} {
		if _, err := puppetPattern(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestOverlaps(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{`^@wa_.*:hub\.test$`, `^@tg_.*:hub\.test$`, false},
		{`^@wa_.*:hub\.test$`, `^@wa_bot:hub\.test$`, true},
		{`@wa_`, `^@wa_x:hub\.test$`, true}, // unanchored: matches anywhere
		{`^@wa`, `^@w[a-z]_.*$`, true},
		{`^@wa_[0-9]+:hub\.test$`, `^@wa_[a-z]+:hub\.test$`, false},
		{`^@.*_bot:hub\.test$`, `^@tg_.*:hub\.test$`, true}, // @tg_x_bot:hub.test
		{`^@.*_bot:hub\.test$`, `^@tg_.*:other\.test$`, false},
		{`^@[0-9]+:hub\.test$`, `^@whatsapp_.*:hub\.test$`, false},
		{`^@[0-9]+:hub\.test$`, `@.*:hub\.test`, true},
		{`(?i)^@WA_.*$`, `^@wa_x$`, true},
		{`^a$`, `^b$`, false},
		{`x$`, `^xy$`, false},
		{`x(?m:$)`, `^xy`, true}, // (?m)$ is treated as satisfiable mid-string: cautious
	}
	for _, c := range cases {
		got, err := Overlaps(c.a, c.b)
		if err != nil {
			t.Fatalf("%s vs %s: %v", c.a, c.b, err)
		}
		if got != c.want {
			t.Errorf("Overlaps(%s, %s) = %v, want %v", c.a, c.b, got, c.want)
		}
		if rev, _ := Overlaps(c.b, c.a); rev != got {
			t.Errorf("Overlaps is not symmetric for %s, %s", c.a, c.b)
		}
	}
	if _, err := Overlaps(`(`, `a`); err == nil {
		t.Error("a bad regex must be an error")
	}
}
