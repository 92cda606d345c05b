package manifest

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/veraison/go-cose"
)

// testNow is the clock of the tests: releases are issued a day before it.
var testNow = time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)

func newKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// sampleRelease is a release as a distributor would make it: agent builds for two archs, a
// system component for one model, an APK, a file and a certificate.
func sampleRelease() Release {
	issued := testNow.Add(-24 * time.Hour).Unix()
	return Release{
		V: Version, Name: "2026.11.1", Serial: 7,
		Issued: issued, Expires: issued + 90*86400,
		Components: []Component{
			{Name: "posagent-arm64", Kind: KindAgent, Version: "1.5.0", Arch: "linux/arm64", Size: 9 << 20, SHA256: sum("agent arm64")},
			{Name: "posagent-arm", Kind: KindAgent, Version: "1.5.0", Arch: "linux/arm", Size: 8 << 20, SHA256: sum("agent arm")},
			{Name: "t3-firmware", Kind: KindComponent, Version: "2.1.0", Models: []string{"T3"}, Size: 1 << 20, SHA256: sum("fw")},
			{Name: "kiosk", Kind: KindAPK, Version: "3.2.0", Models: []string{"WPOS-3", "F20"}, Arch: "android/arm64",
				Size: 4 << 20, SHA256: sum("apk"), Package: "kz.example.kiosk", VersionCode: 320},
			{Name: "logo", Kind: KindFile, Version: "1", Size: 2048, SHA256: sum("logo"), Location: "receipts", Path: "logo.png"},
			{Name: "root-ca", Kind: KindCertificate, Version: "2026.1", Location: "ca", Size: 1500, SHA256: sum("ca")},
		},
	}
}

// tenComponents is a typical release for the benchmark: ten components of every kind.
func tenComponents() Release {
	r := sampleRelease()
	for i := len(r.Components); i < 10; i++ {
		r.Components = append(r.Components, Component{Name: fmt.Sprintf("extra-%d", i), Kind: KindFile, Version: "1.0." + fmt.Sprint(i),
			Size: int64(1000 + i), SHA256: sum(fmt.Sprint(i)), Location: "data", Path: fmt.Sprintf("extra-%d.bin", i)})
	}
	return r
}

func mustSign(t testing.TB, key ed25519.PrivateKey, kid string, r Release) []byte {
	t.Helper()
	raw, err := Sign(key, kid, r)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return raw
}

func mustVerifier(t testing.TB, keys map[string]ed25519.PublicKey) *Verifier {
	t.Helper()
	v, err := NewVerifier(keys)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// signRaw builds a COSE_Sign1 around any payload, with any algorithm and headers, the way a
// hostile or broken signer could: for the decoding paths Sign never produces.
func signRaw(t testing.TB, signer cose.Signer, alg *cose.Algorithm, kid []byte, payload []byte) []byte {
	t.Helper()
	msg := cose.NewSign1Message()
	if alg != nil {
		msg.Headers.Protected.SetAlgorithm(*alg)
	}
	if kid != nil {
		msg.Headers.Protected[cose.HeaderLabelKeyID] = kid
	}
	msg.Payload = payload
	if err := msg.Sign(rand.Reader, nil, signer); err != nil {
		t.Fatalf("sign: %v", err)
	}
	raw, err := msg.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func edSigner(t testing.TB, key crypto.Signer) cose.Signer {
	t.Helper()
	s, err := cose.NewSigner(cose.AlgorithmEdDSA, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
