package license

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/posagent/posagent/agent/tmsproto"
)

// FuzzParse feeds arbitrary bytes to the decoder: it must never panic, every error must be an
// *Error, and whatever it accepts must be a valid licence whose payload is canonical.
func FuzzParse(f *testing.F) {
	f.Add(sign(f, relKey, testKid, lic("L-1")))
	f.Fuzz(func(t *testing.T, raw []byte) {
		info, err := Parse(raw)
		if err != nil {
			var le *Error
			if !errors.As(err, &le) || le.Reason() == "" {
				t.Fatalf("error %T %v is not an *Error with a reason", err, err)
			}
			return
		}
		if err := info.Validate(); err != nil {
			t.Fatalf("accepted an invalid licence: %v", err)
		}
		if info.KeyID == "" {
			t.Fatal("accepted without a key id")
		}
		if _, err := tmsproto.Marshal(info.License); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzVerify runs arbitrary bytes through the whole install check with the test release key:
// no panic, typed errors, and an accepted licence must be bound to the test terminal, valid at
// t0, and re-sign to the very same bytes (Ed25519 is deterministic), i.e. the fuzzer cannot
// find a second encoding the verifier accepts.
func FuzzVerify(f *testing.F) {
	f.Add(sign(f, relKey, testKid, lic("L-1")))
	v, err := NewVerifier(defaultKeys())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		info, err := v.VerifyFor(raw, testTer, t0, DefaultSkew)
		if err != nil {
			var le *Error
			if !errors.As(err, &le) || le.Reason() == "" {
				t.Fatalf("error %T %v is not an *Error with a reason", err, err)
			}
			return
		}
		if info.Serial != testSerial || (info.Platform != testPlatform && info.Platform != AnyPlatform) {
			t.Fatalf("accepted a licence for %s/%s", info.Serial, info.Platform)
		}
		again, err := Sign(relKey, info.KeyID, info.License)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, raw) {
			t.Fatalf("accepted an encoding that is not the canonical one:\n%x\n%x", raw, again)
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/{FuzzParse,FuzzVerify} (the committed seed
// corpus) when LICENSE_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("LICENSE_WRITE_CORPUS") != "1" {
		t.Skip("set LICENSE_WRITE_CORPUS=1 to rewrite the seed corpus")
	}
	seeds := map[string][]byte{
		"valid":          sign(t, relKey, testKid, lic("L-1")),
		"valid-any":      sign(t, relKey, testKid, lic("L-2", func(l *License) { l.Platform = AnyPlatform; l.Expires = 0 })),
		"many-features":  sign(t, relKey, testKid, lic("L-3", func(l *License) { l.Features = manyFeatures(MaxFeatures) })),
		"other-serial":   sign(t, relKey, testKid, lic("L-4", func(l *License) { l.Serial = "SN-0002" })),
		"unknown-key":    sign(t, testKey("other"), "rel-9", lic("L-5")),
		"empty":          {},
		"cose-empty-map": signPayload(t, relKey, testKid, []byte{0xa0}),
	}
	for _, r := range rejections(t) {
		if len(r.raw) <= MaxSize+16 {
			seeds["reject-"+r.name] = r.raw
		}
	}
	for _, target := range []string{"FuzzParse", "FuzzVerify"} {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		names := make([]string, 0, len(seeds))
		for n := range seeds {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			file := filepath.Join(dir, "seed-"+safeName(n))
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seeds[n])
			if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	return string(b)
}
