// Package natstest starts a separate, secured nats-server for tests: TCP
// on loopback, TLS with client certificates, and user/password and NKey
// users, so the hub's connection settings are exercised against the real
// server's checks.
package natstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// Secured is a running secured server and the client-side files for it.
type Secured struct {
	URL string
	// User and Password are a valid user/password pair.
	User, Password string
	// NKeySeedFile holds a valid NKey user seed.
	NKeySeedFile string
	// CAFile is the CA the server's certificate chains to; CertFile and
	// KeyFile are a client certificate the server accepts.
	CAFile, CertFile, KeyFile string
	// OtherCAFile is a CA unrelated to the server's.
	OtherCAFile string
}

// StartSecured runs a JetStream nats-server requiring TLS with a client
// certificate and one of two users, until the test ends.
func StartSecured(t testing.TB) *Secured {
	t.Helper()
	dir := t.TempDir()
	s := &Secured{User: "hub", Password: "s3cret-for-tests"}

	ca, caKey := newCA(t, "eimis test CA")
	s.CAFile = writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.Raw)
	other, _ := newCA(t, "unrelated CA")
	s.OtherCAFile = writePEM(t, dir, "other-ca.pem", "CERTIFICATE", other.Raw)
	srvCert, srvKey := leaf(t, ca, caKey, "nats.test", true)
	srvCertFile := writePEM(t, dir, "server.pem", "CERTIFICATE", srvCert)
	srvKeyFile := writePEM(t, dir, "server-key.pem", "EC PRIVATE KEY", srvKey)
	cliCert, cliKey := leaf(t, ca, caKey, "eimis-hub", false)
	s.CertFile = writePEM(t, dir, "client.pem", "CERTIFICATE", cliCert)
	s.KeyFile = writePEM(t, dir, "client-key.pem", "EC PRIVATE KEY", cliKey)

	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	s.NKeySeedFile = filepath.Join(dir, "hub.nk")
	if err := os.WriteFile(s.NKeySeedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}

	tlsCfg, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: srvCertFile, KeyFile: srvKeyFile, CaFile: s.CAFile, Verify: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: filepath.Join(dir, "js"),
		NoSigs: true, NoLog: true,
		TLS: true, TLSVerify: true, TLSConfig: tlsCfg, TLSTimeout: 5,
		Users: []*server.User{{Username: s.User, Password: s.Password}},
		Nkeys: []*server.NkeyUser{{Nkey: pub}},
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		t.Fatal("secured nats-server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	addr := srv.Addr().(*net.TCPAddr)
	s.URL = fmt.Sprintf("tls://127.0.0.1:%d", addr.Port)
	return s
}

func newCA(t testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func leaf(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, isServer bool) (certDER, keyDER []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if isServer {
		tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tpl.DNSNames = []string{cn, "localhost"}
	} else {
		tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der, kb
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
