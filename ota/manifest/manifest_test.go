package manifest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/veraison/go-cose"
)

// TestRoundTrip is the whole path: Sign → Verify → Check, on an arm64 T3 terminal with an
// older agent installed.
func TestRoundTrip(t *testing.T) {
	pub, priv := newKey(t)
	r := sampleRelease()
	raw := mustSign(t, priv, "rel-1", r)
	if len(raw) > MaxManifestSize {
		t.Fatalf("%d bytes", len(raw))
	}
	s, err := mustVerifier(t, map[string]ed25519.PublicKey{"rel-1": pub}).Verify(raw)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if s.KeyID != "rel-1" || s.Digest != sha256.Sum256(raw) || !reflect.DeepEqual(s.Release, r) {
		t.Fatalf("verified %+v, want %+v", s, r)
	}
	got, err := s.Check(Terminal{
		Model: "t3", Arch: "linux/arm64", Now: testNow,
		Installed: map[string]string{"posagent-arm64": "1.4.2", "root-ca": "2026.1"},
		HighWater: map[string]uint64{"rel-1": 7},
	}, []string{"posagent-arm64", "t3-firmware"})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	// The arm build is skipped (other arch), the APK (other models), the CA (installed).
	var names []string
	for _, c := range got {
		names = append(names, c.Name)
	}
	if want := []string{"posagent-arm64", "t3-firmware", "logo"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("Check = %v, want %v", names, want)
	}
	if !reflect.DeepEqual(got[0], r.Components[0]) {
		t.Errorf("component changed: %+v", got[0])
	}
	// The result is a copy: changing it does not change the verified release.
	got[0].SHA256[0] ^= 0xff
	if s.Release.Components[0].SHA256[0] == got[0].SHA256[0] {
		t.Error("Check returned the release's own slices")
	}
	// Parse reads the same without a key.
	p, err := Parse(raw)
	if err != nil || !reflect.DeepEqual(p.Release, r) || p.KeyID != "rel-1" || p.Digest != s.Digest {
		t.Errorf("Parse: %+v %v", p, err)
	}
}

// TestDigestStable: Ed25519 and the CBOR encoding are deterministic, so one release signed twice
// is the same bytes, and the digest is of those bytes.
func TestDigestStable(t *testing.T) {
	pub, priv := newKey(t)
	v := mustVerifier(t, map[string]ed25519.PublicKey{"k": pub})
	a := mustSign(t, priv, "k", sampleRelease())
	b := mustSign(t, priv, "k", sampleRelease())
	if !bytes.Equal(a, b) {
		t.Fatal("signing the same release twice gave different bytes")
	}
	sa, err := v.Verify(a)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := v.Verify(b)
	if err != nil {
		t.Fatal(err)
	}
	if sa.Digest != sb.Digest || sa.Digest != sha256.Sum256(a) {
		t.Errorf("digests %x %x", sa.Digest, sb.Digest)
	}
	r := sampleRelease()
	r.Serial++
	sc, err := v.Verify(mustSign(t, priv, "k", r))
	if err != nil {
		t.Fatal(err)
	}
	if sc.Digest == sa.Digest {
		t.Error("another release has the same digest")
	}
}

func TestVerifyRejects(t *testing.T) {
	pub, priv := newKey(t)
	otherPub, otherPriv := newKey(t)
	v := mustVerifier(t, map[string]ed25519.PublicKey{"rel-1": pub, "rel-2": otherPub})
	good := mustSign(t, priv, "rel-1", sampleRelease())
	payload, err := tmsproto.Marshal(sampleRelease())
	if err != nil {
		t.Fatal(err)
	}
	ed := edSigner(t, priv)
	eddsa := cose.AlgorithmEdDSA

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	es, err := cose.NewSigner(cose.AlgorithmES256, ecKey)
	if err != nil {
		t.Fatal(err)
	}
	es256 := cose.AlgorithmES256

	// A payload with a field the release does not have, validly signed.
	withExtra := func() []byte {
		m := map[string]any{}
		if err := tmsproto.Unmarshal(payload, &m); err != nil {
			t.Fatal(err)
		}
		m["bonus"] = "x"
		b, err := tmsproto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	// The same release, encoded with map keys in length-first-then-bytes order broken:
	// a valid CBOR map, but not the deterministic encoding.
	nonCanonical := func() []byte {
		b, err := cbor.EncOptions{Sort: cbor.SortNone}.EncMode()
		if err != nil {
			t.Fatal(err)
		}
		out, err := b.Marshal(struct {
			Components []Component `cbor:"components"`
			V          uint        `cbor:"v"`
			Name       string      `cbor:"name"`
			Serial     uint64      `cbor:"serial"`
			Issued     int64       `cbor:"issued"`
			Expires    int64       `cbor:"expires"`
		}{sampleRelease().Components, 1, "2026.11.1", 7, sampleRelease().Issued, sampleRelease().Expires})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}()
	invalid := sampleRelease()
	invalid.Serial = 0
	invalidPayload, err := tmsproto.Marshal(invalid)
	if err != nil {
		t.Fatal(err)
	}
	// Hand-built COSE_Sign1 structures for what go-cose's signer will not make.
	handBuilt := func(protected map[int64]any, body any) []byte {
		p, err := cbor.Marshal(protected)
		if err != nil {
			t.Fatal(err)
		}
		out, err := cbor.Marshal(cbor.Tag{Number: 18, Content: []any{p, map[int64]any{}, body, make([]byte, 64)}})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	unprotectedKid := func() []byte {
		msg := cose.NewSign1Message()
		msg.Headers.Protected.SetAlgorithm(cose.AlgorithmEdDSA)
		msg.Headers.Unprotected[cose.HeaderLabelKeyID] = []byte("rel-1")
		msg.Payload = payload
		if err := msg.Sign(rand.Reader, nil, ed); err != nil {
			t.Fatal(err)
		}
		out, err := msg.MarshalCBOR()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}()

	tests := []struct {
		name string
		raw  []byte
		want Reason
	}{
		{"empty", nil, ReasonMalformed},
		{"junk", []byte("hello"), ReasonMalformed},
		{"truncated", good[:len(good)-10], ReasonMalformed},
		{"untagged", good[1:], ReasonMalformed},
		{"oversized", append(bytes.Clone(good), make([]byte, MaxManifestSize)...), ReasonOversized},
		{"tampered signature", flip(good, len(good)-1), ReasonBadSignature},
		{"tampered payload", flip(good, bytes.Index(good, []byte("2026.11.1"))), ReasonBadSignature},
		{"other key same kid", mustSign(t, otherPriv, "rel-1", sampleRelease()), ReasonBadSignature},
		{"untrusted kid", mustSign(t, priv, "rel-9", sampleRelease()), ReasonUnknownKey},
		{"trusted kid of another key", mustSign(t, priv, "rel-2", sampleRelease()), ReasonBadSignature},
		{"no kid", signRaw(t, ed, &eddsa, nil, payload), ReasonUnknownKey},
		{"kid only unprotected", unprotectedKid, ReasonUnknownKey},
		{"ES256", signRaw(t, es, &es256, []byte("rel-1"), payload), ReasonBadAlgorithm},
		{"no algorithm", handBuilt(map[int64]any{4: []byte("rel-1")}, payload), ReasonBadAlgorithm},
		{"text algorithm", handBuilt(map[int64]any{1: "EdDSA", 4: []byte("rel-1")}, payload), ReasonBadAlgorithm},
		{"detached payload", handBuilt(map[int64]any{1: -8, 4: []byte("rel-1")}, nil), ReasonMalformed},
		{"unknown field", signRaw(t, ed, &eddsa, []byte("rel-1"), withExtra), ReasonMalformed},
		{"not canonical", signRaw(t, ed, &eddsa, []byte("rel-1"), nonCanonical), ReasonMalformed},
		{"payload not CBOR", signRaw(t, ed, &eddsa, []byte("rel-1"), []byte{0xff, 0x00}), ReasonMalformed},
		{"payload not a map", signRaw(t, ed, &eddsa, []byte("rel-1"), []byte{0x01}), ReasonMalformed},
		{"invalid release", signRaw(t, ed, &eddsa, []byte("rel-1"), invalidPayload), ReasonInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := v.Verify(tc.raw)
			if err == nil {
				t.Fatalf("accepted: %+v", s)
			}
			var me *Error
			t.Log(err)
			if !errors.As(err, &me) || me.Reason != tc.want || ReasonOf(err) != tc.want {
				t.Fatalf("error %v (reason %q), want reason %q", err, ReasonOf(err), tc.want)
			}
		})
	}
	// A verifier that trusts nothing refuses even a good manifest as unknown_key.
	if _, err := mustVerifier(t, nil).Verify(good); ReasonOf(err) != ReasonUnknownKey {
		t.Errorf("empty verifier: %v", err)
	}
	// And the good one passes, so the table above fails for the reason it names.
	if _, err := v.Verify(good); err != nil {
		t.Errorf("good: %v", err)
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

func TestSignRefuses(t *testing.T) {
	_, priv := newKey(t)
	if _, err := Sign(priv, "", sampleRelease()); !errors.Is(err, ErrNoKeyID) {
		t.Errorf("empty kid: %v", err)
	}
	if _, err := Sign(priv[:10], "k", sampleRelease()); err == nil {
		t.Error("short key accepted")
	}
	bad := sampleRelease()
	bad.Components[0].Size = 0
	if _, err := Sign(priv, "k", bad); ReasonOf(err) != ReasonInvalid {
		t.Errorf("invalid release: %v", err)
	}
	// 256 components with long model lists do not fit in 64 KiB.
	big := sampleRelease()
	big.Components = nil
	for i := range MaxComponents {
		models := make([]string, 8)
		for j := range models {
			models[j] = strings.Repeat("M", 30) + string(rune('a'+j))
		}
		big.Components = append(big.Components, Component{Name: fmt.Sprintf("c%s%03d", strings.Repeat("x", 40), i), Kind: KindComponent,
			Version: "1.0.0", Models: models, Size: 1, SHA256: sum("x")})
	}
	if _, err := Sign(priv, "k", big); ReasonOf(err) != ReasonOversized {
		t.Errorf("oversized: %v", err)
	}
}

func TestNewVerifierRefuses(t *testing.T) {
	pub, _ := newKey(t)
	if _, err := NewVerifier(map[string]ed25519.PublicKey{"": pub}); err == nil {
		t.Error("empty kid accepted")
	}
	if _, err := NewVerifier(map[string]ed25519.PublicKey{"k": pub[:31]}); err == nil {
		t.Error("short key accepted")
	}
}

func TestErrorMatching(t *testing.T) {
	err := error(&Error{Reason: ReasonDowngrade, Component: "kiosk", Err: errors.New("version 1 is older than the installed 2")})
	if got := err.Error(); got != "downgrade: kiosk: version 1 is older than the installed 2" {
		t.Errorf("Error() = %q", got)
	}
	wrapped := errors.Join(errors.New("install"), err)
	if !errors.Is(wrapped, &Error{Reason: ReasonDowngrade}) || !errors.Is(wrapped, &Error{Reason: ReasonDowngrade, Component: "kiosk"}) {
		t.Error("errors.Is by reason / by reason and component")
	}
	if errors.Is(wrapped, &Error{Reason: ReasonRollback}) || errors.Is(wrapped, &Error{Reason: ReasonDowngrade, Component: "other"}) {
		t.Error("errors.Is matched another reason or component")
	}
	if ReasonOf(wrapped) != ReasonDowngrade || ReasonOf(errors.New("x")) != "" || ReasonOf(nil) != "" {
		t.Error("ReasonOf")
	}
	if got := (&Error{Reason: ReasonExpired}).Error(); got != "expired" {
		t.Errorf("bare Error() = %q", got)
	}
}
