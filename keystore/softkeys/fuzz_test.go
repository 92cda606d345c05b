package softkeys

import (
	"bytes"
	"crypto/cipher"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/posagent/posagent/keystore"
)

// fuzzRoot is the root key of the fuzz target and of its committed seed corpus.
var fuzzRoot = bytes.Repeat([]byte{0xA5}, RootKeySize)

func fuzzAEAD(tb testing.TB) cipher.AEAD {
	a, err := newAEAD(fuzzRoot)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// FuzzOpenRecord feeds arbitrary values to the record decoder, sealed or not: it must never
// panic, and whatever it accepts must be a key some load could have stored in that slot, which
// seals and opens back to itself. The seed corpus (testdata/fuzz/FuzzOpenRecord) holds valid
// records of every usage and algorithm under fuzzRoot; TestWriteFuzzCorpus rewrites it.
func FuzzOpenRecord(f *testing.F) {
	aead := fuzzAEAD(f)
	f.Add(uint16(0), []byte{})
	f.Add(uint16(3), []byte{byte(keystore.UsageMAK), byte(keystore.TDES), 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, slot uint16, val []byte) {
		for _, fn := range []func() (*record, error){
			func() (*record, error) { return openRecord(aead, int(slot), val) },
			func() (*record, error) { return decodePlain(int(slot), bytes.Clone(val)) },
		} {
			r, err := fn()
			if err != nil {
				if r != nil {
					t.Fatal("record with an error")
				}
				continue
			}
			if !validKey(int(slot), r.usage, r.alg, len(r.key)) {
				t.Fatalf("accepted slot %d usage %d alg %d length %d", slot, r.usage, r.alg, len(r.key))
			}
			sealed := sealRecord(aead, int(slot), r)
			r2, err := openRecord(aead, int(slot), sealed)
			if err != nil || r2.usage != r.usage || r2.alg != r.alg || !bytes.Equal(r2.key, r.key) {
				t.Fatalf("round trip: %v", err)
			}
			if _, err := openRecord(aead, int(slot)+1, sealed); err == nil {
				t.Fatal("record opened in another slot")
			}
		}
	})
}

// TestWriteFuzzCorpus rewrites the seed corpus when SOFTKEYS_WRITE_CORPUS is set.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("SOFTKEYS_WRITE_CORPUS") == "" {
		t.Skip("set SOFTKEYS_WRITE_CORPUS=1 to rewrite testdata/fuzz/FuzzOpenRecord")
	}
	aead := fuzzAEAD(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzOpenRecord")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, slot int, val []byte) {
		s := fmt.Sprintf("go test fuzz v1\nuint16(%d)\n[]byte(%+q)\n", slot, val)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	recs := []struct {
		name string
		slot int
		r    record
	}{
		{"transport-tdes16", 0, record{keystore.UsageTransport, keystore.TDES, bytes.Repeat([]byte{0x11}, 16)}},
		{"transport-aes32", 0, record{keystore.UsageTransport, keystore.AES, bytes.Repeat([]byte{0x22}, 32)}},
		{"kek-aes16", 1, record{keystore.UsageKEK, keystore.AES, bytes.Repeat([]byte{0x33}, 16)}},
		{"kek-tdes24", 1, record{keystore.UsageKEK, keystore.TDES, bytes.Repeat([]byte{0x44}, 24)}},
		{"pik-tdes16", 2, record{keystore.UsagePIK, keystore.TDES, bytes.Repeat([]byte{0x55}, 16)}},
		{"mak-tdes8", 3, record{keystore.UsageMAK, keystore.TDES, bytes.Repeat([]byte{0x66}, 8)}},
		{"tdk-tdes24", 63, record{keystore.UsageTDK, keystore.TDES, bytes.Repeat([]byte{0x77}, 24)}},
	}
	for _, c := range recs {
		sealed := sealRecord(aead, c.slot, &c.r)
		write("valid-"+c.name, c.slot, sealed)
		// The same record claimed by another slot, and a flipped tag.
		write("moved-"+c.name, c.slot+1, sealed)
		bad := bytes.Clone(sealed)
		bad[len(bad)-1] ^= 1
		write("tampered-"+c.name, c.slot, bad)
		// Plaintexts, for decodePlain.
		pt := append([]byte{byte(c.r.usage), byte(c.r.alg)}, c.r.key...)
		write("plain-"+c.name, c.slot, pt)
	}
	// Plaintexts that no load writes: AES PIK, transport outside slot 0, bad lengths.
	write("plain-aes-pik", 2, append([]byte{byte(keystore.UsagePIK), byte(keystore.AES)}, make([]byte, 16)...))
	write("plain-transport-slot1", 1, append([]byte{byte(keystore.UsageTransport), byte(keystore.TDES)}, make([]byte, 16)...))
	write("plain-tdes12", 2, append([]byte{byte(keystore.UsagePIK), byte(keystore.TDES)}, make([]byte, 12)...))
	write("plain-usage9", 2, append([]byte{9, byte(keystore.TDES)}, make([]byte, 16)...))
	write("short", 5, []byte{1})
}
