package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/eimis-hub/eimis/federation/trustlist"
)

const federationUsage = `usage: eimis-hub federation COMMAND [flags]

Run a trust space's authority: its key, and the signed federation list
every hub of the space verifies (docs/federation.md).

  eimis-hub federation authority-keygen --out FILE
      write a new Ed25519 authority private key to FILE (never overwritten)
      and print the public key on stdout, the value of
      --federation-authority-key on every hub
  eimis-hub federation sign --key FILE --in LIST.yaml --out LIST.jws
      validate the YAML list (servers: name, operator, status
      active|suspended|revoked, users directory|server_vouched; expires;
      optional version and issued) and sign it with the authority key
`

// federationMain runs "eimis-hub federation …" (args after "federation").
func federationMain(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, federationUsage)
		return errors.New("federation: a command is required")
	}
	switch args[0] {
	case "authority-keygen":
		return federationKeygen(args[1:], stdout, stderr)
	case "sign":
		return federationSign(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, federationUsage)
		return nil
	}
	fmt.Fprint(stderr, federationUsage)
	return fmt.Errorf("federation: unknown command %q", args[0])
}

func federationKeygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eimis-hub federation authority-keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "file to write the private key to (created, never overwritten)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() != 0 {
		return errors.New("federation authority-keygen: --out FILE is required, and nothing else")
	}
	key, err := trustlist.GenerateAuthorityKey()
	if err != nil {
		return err
	}
	pemKey, err := trustlist.EncodePrivateKey(key)
	if err != nil {
		return err
	}
	pub, err := trustlist.EncodePublicKey(key.Public())
	if err != nil {
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("federation authority-keygen: %w", err)
	}
	if _, err := f.Write(pemKey); err != nil {
		f.Close()
		os.Remove(*out)
		return fmt.Errorf("federation authority-keygen: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(*out)
		return fmt.Errorf("federation authority-keygen: %w", err)
	}
	fmt.Fprintln(stdout, pub)
	return nil
}

func federationSign(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eimis-hub federation sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("key", "", "the authority's private key (authority-keygen)")
	in := fs.String("in", "", "the list in YAML")
	out := fs.String("out", "", "the signed list (JWS) to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *keyFile == "" || *in == "" || *out == "" || fs.NArg() != 0 {
		return errors.New("federation sign: --key, --in and --out are required")
	}
	keyPEM, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("federation sign: %w", err)
	}
	key, err := trustlist.ParsePrivateKey(keyPEM)
	if err != nil {
		return fmt.Errorf("federation sign: %w", err)
	}
	src, err := os.ReadFile(*in)
	if err != nil {
		return fmt.Errorf("federation sign: %w", err)
	}
	list, err := trustlist.ParseYAML(src)
	if err != nil {
		return fmt.Errorf("federation sign: %s: %w", *in, err)
	}
	signed, err := trustlist.Sign(list, key, time.Now())
	if err != nil {
		return fmt.Errorf("federation sign: %w", err)
	}
	// Written beside the target and renamed over it, so a hub re-reading
	// the file never sees half a list.
	tmp := *out + ".tmp"
	if err := os.WriteFile(tmp, []byte(signed+"\n"), 0o644); err != nil {
		return fmt.Errorf("federation sign: %w", err)
	}
	if err := os.Rename(tmp, *out); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("federation sign: %w", err)
	}
	fmt.Fprintf(stderr, "signed %d servers, expires %s, into %s\n", len(list.Servers), list.Expires.UTC().Format(time.RFC3339), *out)
	return nil
}
