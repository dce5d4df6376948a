package trustlist

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// MediaType is the JWS "typ" of a federation list: checked on
// verification, so nothing else the authority's key signs can pass for a
// list.
const MediaType = "eimis-federation-list+jws"

// MaxSignedBytes bounds a signed list read from a file or a URL.
const MaxSignedBytes = 16 << 20

// ErrSignature is wrapped by every verification failure: unsigned, signed
// by another key, or with a signature that does not verify.
var ErrSignature = errors.New("federation list signature")

// GenerateAuthorityKey makes a new Ed25519 authority key.
func GenerateAuthorityKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating authority key: %w", err)
	}
	return priv, nil
}

// EncodePrivateKey renders a private key as a PKCS#8 PEM block.
func EncodePrivateKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encoding authority key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey reads a PKCS#8 PEM private key (Ed25519 or P-256).
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("authority key: not a PEM \"PRIVATE KEY\" block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("authority key: %w", err)
	}
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("authority key: ECDSA keys must be P-256 (ES256)")
		}
		return k, nil
	}
	return nil, fmt.Errorf("authority key: %T is neither Ed25519 nor P-256", k)
}

// EncodePublicKey is the public key's inline form, the value of
// --federation-authority-key: "ed25519:<unpadded base64>" for Ed25519, a
// PEM "PUBLIC KEY" block for P-256.
func EncodePublicKey(pub crypto.PublicKey) (string, error) {
	if k, ok := pub.(ed25519.PublicKey); ok {
		return "ed25519:" + base64.RawStdEncoding.EncodeToString(k), nil
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encoding authority public key: %w", err)
	}
	return strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))), nil
}

// ParsePublicKey reads the authority's public key from an inline value
// ("ed25519:<base64>" or a PEM "PUBLIC KEY" block) or, when value is
// neither, from the file it names holding one.
func ParsePublicKey(value string) (crypto.PublicKey, error) {
	v := strings.TrimSpace(value)
	if v == "" {
		return nil, errors.New("authority public key: empty")
	}
	if !strings.HasPrefix(v, "ed25519:") && !strings.HasPrefix(v, "-----BEGIN") {
		data, err := os.ReadFile(v)
		if err != nil {
			return nil, fmt.Errorf("authority public key: not an inline key, and not a readable file: %w", err)
		}
		v = strings.TrimSpace(string(data))
	}
	if rest, ok := strings.CutPrefix(v, "ed25519:"); ok {
		raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(rest, "="))
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, errors.New("authority public key: ed25519: wants the unpadded base64 of 32 bytes")
		}
		return ed25519.PublicKey(raw), nil
	}
	block, _ := pem.Decode([]byte(v))
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("authority public key: want ed25519:<base64> or a PEM \"PUBLIC KEY\" block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("authority public key: %w", err)
	}
	switch k := k.(type) {
	case ed25519.PublicKey:
		return k, nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return k, nil
		}
	}
	return nil, fmt.Errorf("authority public key: %T is neither Ed25519 nor P-256", k)
}

func algorithmOf(k any) (jose.SignatureAlgorithm, error) {
	switch k.(type) {
	case ed25519.PrivateKey, ed25519.PublicKey:
		return jose.EdDSA, nil
	case *ecdsa.PrivateKey, *ecdsa.PublicKey:
		return jose.ES256, nil
	}
	return "", fmt.Errorf("unsupported authority key %T", k)
}

// Sign validates l and signs it with the authority's key into a compact
// JWS. A zero issue time becomes now, a zero version the issue time in
// Unix seconds, so successive lists increase without bookkeeping.
func Sign(l List, key crypto.Signer, now time.Time) (string, error) {
	if l.Issued.IsZero() {
		l.Issued = now.UTC().Truncate(time.Second)
	}
	if l.Version == 0 {
		l.Version = l.Issued.Unix()
	}
	if err := l.Validate(); err != nil {
		return "", err
	}
	if !l.Expires.After(now) {
		return "", fmt.Errorf("%w: expires %s is already past", ErrInvalid, l.Expires.Format(time.RFC3339))
	}
	alg, err := algorithmOf(key)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(l)
	if err != nil {
		return "", fmt.Errorf("encoding federation list: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
		(&jose.SignerOptions{}).WithType(MediaType))
	if err != nil {
		return "", fmt.Errorf("signing federation list: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing federation list: %w", err)
	}
	return jws.CompactSerialize()
}

// Verify checks a signed list against the authority's public key and
// returns its validated content. It does not look at the expiry: the
// holder (Watcher) decides what an expired list still means.
func Verify(signed []byte, pub crypto.PublicKey) (List, error) {
	alg, err := algorithmOf(pub)
	if err != nil {
		return List{}, err
	}
	jws, err := jose.ParseSignedCompact(string(bytes.TrimSpace(signed)), []jose.SignatureAlgorithm{alg})
	if err != nil {
		return List{}, fmt.Errorf("%w: not a compact JWS signed with %s: %w", ErrSignature, alg, err)
	}
	if len(jws.Signatures) != 1 {
		return List{}, fmt.Errorf("%w: want exactly one signature", ErrSignature)
	}
	if typ, _ := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string); typ != MediaType {
		return List{}, fmt.Errorf("%w: typ %q is not %s", ErrSignature, typ, MediaType)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		return List{}, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	var l List
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return List{}, fmt.Errorf("%w: payload: %w", ErrInvalid, err)
	}
	if err := l.Validate(); err != nil {
		return List{}, err
	}
	return l, nil
}
