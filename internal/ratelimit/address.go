package ratelimit

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientAddress is the address a request came from, as the key of a
// per-address limit. It is the peer's address, unless the peer is one of
// the trusted reverse proxies: then it is the rightmost address of
// X-Forwarded-For that is not a trusted proxy (the leftmost entries are
// whatever the client chose to send, so they are never believed). An
// IPv6 address stands for its /64, which one subscriber gets whole.
func ClientAddress(r *http.Request, trusted []netip.Prefix) string {
	peer := parseAddr(r.RemoteAddr)
	if peer.IsValid() && len(trusted) > 0 && isTrusted(peer, trusted) {
		hops := r.Header.Values("X-Forwarded-For")
		addr := peer
	walk:
		for i := len(hops) - 1; i >= 0; i-- {
			parts := strings.Split(hops[i], ",")
			for j := len(parts) - 1; j >= 0; j-- {
				a := parseAddr(strings.TrimSpace(parts[j]))
				if !a.IsValid() {
					break walk // a garbled hop: trust nothing beyond it
				}
				addr = a
				if !isTrusted(a, trusted) {
					break walk
				}
			}
		}
		peer = addr
	}
	if !peer.IsValid() {
		return r.RemoteAddr
	}
	return addressKey(peer)
}

func addressKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}

// parseAddr reads "ip", "ip:port" or "[ipv6]:port".
func parseAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr()
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}
	}
	return a
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseProxies reads a comma-separated list of addresses and CIDR
// prefixes ("127.0.0.1, 10.0.0.0/8").
func ParseProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, err
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, err
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
