package bus

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/nats-io/nats.go"
)

// Security holds the credentials and TLS files for an external NATS. At
// most one credential kind is used; the config layer rejects more.
type Security struct {
	User, Password string
	Token          string
	NKeySeedFile   string
	CredsFile      string
	// CAFile turns TLS on and pins the server's CA; CertFile and KeyFile
	// add a client certificate (mutual TLS).
	CAFile, CertFile, KeyFile string
}

// options turns s into nats.go connection options.
func (s Security) options() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case s.CredsFile != "":
		opts = append(opts, nats.UserCredentials(s.CredsFile))
	case s.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(s.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("bus: nkey seed file: %w", err)
		}
		opts = append(opts, o)
	case s.Token != "":
		opts = append(opts, nats.Token(s.Token))
	case s.User != "":
		opts = append(opts, nats.UserInfo(s.User, s.Password))
	}
	if s.CAFile != "" {
		opts = append(opts, nats.RootCAs(s.CAFile))
	}
	if s.CertFile != "" {
		opts = append(opts, nats.ClientCert(s.CertFile, s.KeyFile))
	}
	if s.CAFile != "" || s.CertFile != "" {
		opts = append(opts, nats.Secure())
	}
	return opts, nil
}

// explainConnect adds the likely cause to the errors an operator meets when
// the credentials or TLS settings do not match the cluster's.
func explainConnect(err error) error {
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return fmt.Errorf("bus: connect to nats: the server refused our credentials (check nats_user/nats_password, nats_token, nats_nkey_seed_file or nats_creds_file): %w", err)
	case errors.Is(err, nats.ErrSecureConnRequired):
		return fmt.Errorf("bus: connect to nats: the server requires TLS (set nats_ca_file, or use a tls:// URL): %w", err)
	case errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Errorf("bus: connect to nats: TLS is configured but the server does not offer it: %w", err)
	}
	return fmt.Errorf("bus: connect to nats: %w", err)
}

// splitListen parses the embedded server's optional loopback listener.
func splitListen(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("bus: embedded listen address %q: %w", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, fmt.Errorf("bus: embedded listen port %q: %w", port, err)
	}
	if n == 0 {
		// nats-server reads port 0 as "its default 4222"; RANDOM_PORT
		// asks for a free one, as 0 does for the hub's own listener.
		n = -1
	}
	return host, n, nil
}
