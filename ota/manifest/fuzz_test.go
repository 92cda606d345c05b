package manifest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/posagent/posagent/agent/tmsproto"
	"github.com/veraison/go-cose"
)

// fuzzKey is the fixed release key of the fuzz corpus: testdata/fuzz/FuzzVerify holds
// manifests signed with it, so the fuzzer starts from inputs that get past the signature.
// A test key, trusted nowhere.
var fuzzKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x5e}, ed25519.SeedSize))

const fuzzKid = "fuzz-1"

func fuzzVerifier(t testing.TB) *Verifier {
	return mustVerifier(t, map[string]ed25519.PublicKey{fuzzKid: fuzzKey.Public().(ed25519.PublicKey)})
}

// FuzzVerify: Verify never panics, every refusal carries a Reason, and whatever it accepts is
// a valid release that verifies again identically, whose digest is of the input, and whose
// payload is exactly its canonical encoding.
func FuzzVerify(f *testing.F) {
	v := fuzzVerifier(f)
	f.Add(mustSign(f, fuzzKey, fuzzKid, sampleRelease()))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := v.Verify(raw)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if err := s.Release.Validate(); err != nil {
			t.Fatalf("accepted an invalid release: %v", err)
		}
		if s.KeyID != fuzzKid || s.Digest != sha256.Sum256(raw) {
			t.Fatalf("kid %q digest %x", s.KeyID, s.Digest)
		}
		again, err := v.Verify(bytes.Clone(raw))
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("second Verify: %+v, %v; first %+v", again, err, s)
		}
		var msg cose.Sign1Message
		if err := msg.UnmarshalCBOR(raw); err != nil {
			t.Fatal(err)
		}
		canon, err := tmsproto.Marshal(s.Release)
		if err != nil || !bytes.Equal(canon, msg.Payload) {
			t.Fatalf("accepted a non-canonical payload")
		}
	})
}

// FuzzCompareVersions: CompareVersions is reflexive and antisymmetric on valid versions,
// extra ".0" parts change nothing, and it refuses exactly what ValidVersion refuses.
func FuzzCompareVersions(f *testing.F) {
	f.Add("1.4.0", "1.4.0-rc.1")
	f.Add("1.10", "1.9")
	f.Fuzz(func(t *testing.T, a, b string) {
		c, err := CompareVersions(a, b)
		if (err == nil) != (ValidVersion(a) == nil && ValidVersion(b) == nil) {
			t.Fatalf("CompareVersions(%q, %q) error %v disagrees with ValidVersion", a, b, err)
		}
		if err != nil {
			return
		}
		if c < -1 || c > 1 {
			t.Fatalf("CompareVersions(%q, %q) = %d", a, b, c)
		}
		if r, _ := CompareVersions(b, a); r != -c {
			t.Fatalf("CompareVersions(%q, %q) = %d but reversed %d", a, b, c, r)
		}
		if r, _ := CompareVersions(a, a); r != 0 {
			t.Fatalf("CompareVersions(%q, itself) = %d", a, r)
		}
		core, pre, hasPre := strings.Cut(a, "-")
		longer := core + ".0"
		if hasPre {
			longer += "-" + pre
		}
		if ValidVersion(longer) == nil {
			if r, _ := CompareVersions(a, longer); r != 0 {
				t.Fatalf("CompareVersions(%q, %q) = %d, want 0", a, longer, r)
			}
		}
	})
}

// TestFuzzSeedVerifies keeps the committed seed honest: at least one file of the FuzzVerify
// corpus is a manifest that verifies, so the fuzzer explores past the signature check.
func TestFuzzSeedVerifies(t *testing.T) {
	v := fuzzVerifier(t)
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzVerify", "*"))
	if err != nil || len(files) < 3 {
		t.Fatalf("corpus: %v %v", files, err)
	}
	ok := 0
	for _, name := range files {
		raw := readCorpusBytes(t, name)
		if _, err := v.Verify(raw); err == nil {
			ok++
		}
	}
	if ok == 0 {
		t.Error("no manifest in the corpus verifies")
	}
}

// readCorpusBytes reads a one-argument []byte file of the go fuzz corpus format.
func readCorpusBytes(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	header, arg, _ := strings.Cut(string(data), "\n")
	arg = strings.TrimSpace(arg)
	if header != "go test fuzz v1" || !strings.HasPrefix(arg, "[]byte(") || !strings.HasSuffix(arg, ")") {
		t.Fatalf("%s: not a []byte corpus file", name)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(arg, "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return []byte(s)
}

func BenchmarkVerify(b *testing.B) {
	v := fuzzVerifier(b)
	raw := mustSign(b, fuzzKey, fuzzKid, tenComponents())
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(raw); err != nil {
			b.Fatal(err)
		}
	}
}
