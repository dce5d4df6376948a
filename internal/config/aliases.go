package config

import (
	"flag"
	"fmt"
)

// flagAliases are former flag names, kept so existing scripts and units
// still work. Every setting's flag is its YAML key with dashes
// (TestFlagsFollowKeys); an alias is the way out when that rule changed a
// name.
var flagAliases = map[string]string{
	// Until 2026-12 --signing-key set signing_key_path.
	"signing-key": "signing-key-path",
}

// canonicalFlag maps an alias to the flag it stands for.
func canonicalFlag(name string) string {
	if c, ok := flagAliases[name]; ok {
		return c
	}
	return name
}

// bindAliases registers each alias as a second name of its flag's value.
func (c *Config) bindAliases(fs *flag.FlagSet) {
	for alias, name := range flagAliases {
		f := fs.Lookup(name)
		if f == nil || fs.Lookup(alias) != nil {
			continue
		}
		fs.Var(f.Value, alias, fmt.Sprintf("former name of --%s", name))
	}
}
