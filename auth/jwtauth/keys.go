package jwtauth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"

	"github.com/MicahParks/jwkset"
)

// The signing algorithms each key type verifies. A key is never asked to
// check a token of another family: that is what keeps an HMAC token
// "signed" with a public key's bytes from verifying.
var (
	hmacAlgs    = []string{"HS256", "HS384", "HS512"}
	rsaAlgs     = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	ecdsaAlgs   = map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
	ed25519Algs = []string{"EdDSA"}
)

// asymmetricAlgs are the algorithms of every public key type, the ones a
// key set fetched from a URL may need.
var asymmetricAlgs = slices.Concat(rsaAlgs, []string{"ES256", "ES384", "ES512"}, ed25519Algs)

// algsFor returns the algorithms key verifies; none for a key of a type
// this package does not use.
func algsFor(key any) []string {
	switch k := key.(type) {
	case []byte:
		return hmacAlgs
	case *rsa.PublicKey:
		return rsaAlgs
	case *ecdsa.PublicKey:
		if alg, ok := ecdsaAlgs[k.Curve.Params().Name]; ok {
			return []string{alg}
		}
	case ed25519.PublicKey:
		return ed25519Algs
	}
	return nil
}

// fits reports whether key may verify a token signed with alg.
func fits(alg string, key any) bool { return slices.Contains(algsFor(key), alg) }

// staticKey is a key from Config.HMACSecret or the key file. alg, when
// set, is the one algorithm its JWK allows.
type staticKey struct {
	key any
	alg string
}

func (k staticKey) fits(alg string) bool {
	return (k.alg == "" || k.alg == alg) && fits(alg, k.key)
}

// algs returns the algorithms k verifies.
func (k staticKey) algs() []string {
	if k.alg != "" {
		if k.fits(k.alg) {
			return []string{k.alg}
		}
		return nil
	}
	return algsFor(k.key)
}

// parseKeyData reads a key file: a JWK set (JSON) or PEM blocks.
func parseKeyData(data []byte) ([]staticKey, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("no keys: the key file is empty")
	}
	if data[0] == '{' {
		jwks, err := parseJWKSet(data, true)
		if err != nil {
			return nil, err
		}
		keys := make([]staticKey, 0, len(jwks))
		for _, j := range jwks {
			keys = append(keys, staticKey{key: publicKey(j.Key()), alg: j.Marshal().ALG.String()})
		}
		return keys, nil
	}
	return parsePEM(data)
}

// parsePEM reads PEM public keys and certificates, every block of data.
func parsePEM(data []byte) ([]staticKey, error) {
	var keys []staticKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var key any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY":
			return nil, fmt.Errorf("PEM block %d is a private key: give the gateway the public key only", n)
		default:
			return nil, fmt.Errorf("PEM block %d: type %q is not a public key or certificate", n, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		if algsFor(key) == nil {
			return nil, fmt.Errorf("PEM block %d: a %T is not an RSA, ECDSA (P-256, P-384, P-521) or Ed25519 key", n, key)
		}
		keys = append(keys, staticKey{key: key})
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys: the key file holds neither PEM blocks nor a JWK set")
	}
	return keys, nil
}

// parseJWKSet reads a JWK set with jwkset. Keys marked for encryption, of
// a type no algorithm here verifies (Ed448, X25519) or, unless oct is
// set, shared secrets are left out; a key that does not parse fails the
// set, and so does a set left with no key.
func parseJWKSet(data []byte, oct bool) ([]jwkset.JWK, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("JWK set: %w", err)
	}
	var keys []jwkset.JWK
	for i, m := range set.Keys {
		if m.USE == jwkset.UseEnc || (m.KTY == jwkset.KtyOct && !oct) {
			continue
		}
		// jwkset reads a shared secret only as private material; the
		// public half of an asymmetric key is taken below either way.
		j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{Private: oct}, jwkset.JWKValidateOptions{})
		if errors.Is(err, jwkset.ErrUnsupportedKey) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("JWK set: key %d (kid %q): %w", i, m.KID, err)
		}
		if algsFor(publicKey(j.Key())) == nil {
			continue
		}
		keys = append(keys, j)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWK set: none of its %d keys is a signing key this package can use", len(set.Keys))
	}
	return keys, nil
}

// publicKey returns the public half of a private key, and key itself
// otherwise.
func publicKey(key any) any {
	if k, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		return k.Public()
	}
	return key
}
