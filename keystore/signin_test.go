package keystore_test

import (
	"bytes"
	"context"
	"crypto/des"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posagent/posagent/agent/store"
	"github.com/posagent/posagent/keystore"
	"github.com/posagent/posagent/keystore/kcv"
	"github.com/posagent/posagent/keystore/softkeys"
	"github.com/posagent/posagent/keystore/tr31"
)

// Keys from docs/pinpad-protocol.md (test keys).
var (
	transport = []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10}
	kek       = []byte{0x89, 0xAB, 0xCD, 0xEF, 0x01, 0x23, 0x45, 0x67, 0x76, 0x54, 0x32, 0x10, 0xFE, 0xDC, 0xBA, 0x98}
	pik       = []byte{0xF1, 0xE2, 0xD3, 0xC4, 0xB5, 0xA6, 0x97, 0x88, 0x79, 0x6A, 0x5B, 0x4C, 0x3D, 0x2E, 0x1F, 0x00}
	mak8      = []byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}
	tdk       = []byte{0x0F, 0x1E, 0x2D, 0x3C, 0x4B, 0x5A, 0x69, 0x78, 0x87, 0x96, 0xA5, 0xB4, 0xC3, 0xD2, 0xE1, 0xF0}
)

// ecb encrypts key under k with TDES-ECB, as the host does for field 62.
func ecb(t *testing.T, k, key []byte) []byte {
	b, err := des.NewTripleDESCipher(append(bytes.Clone(k), k[:8]...))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(key))
	for i := 0; i < len(key); i += 8 {
		b.Encrypt(out[i:], key[i:i+8])
	}
	return out
}

func cv(t *testing.T, key []byte, n int) []byte {
	v, err := kcv.TDES(key, n)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// field62 builds a sign-in answer's working keys: each under the KEK, with its check value.
func field62(t *testing.T, keys ...[]byte) []byte {
	var out []byte
	for _, k := range keys {
		enc := ecb(t, kek, k)
		if len(k) == 8 && len(keys[0]) == 16 {
			enc = append(enc, make([]byte, 8)...) // a single-DES MAK in the double-length layout
		}
		out = append(append(out, enc...), cv(t, k, 4)...)
	}
	return out
}

func newSoftStore(t *testing.T) *keystore.Store {
	dir := t.TempDir()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := store.NewCommitter(db)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	soft, err := softkeys.Open(softkeys.Options{DB: db, Commit: c, Root: softkeys.FileRootKey(filepath.Join(dir, "root")), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := soft.InjectTransport(ctx, keystore.TDES, transport, false); err != nil {
		t.Fatal(err)
	}
	ks, err := keystore.Open(keystore.Options{DB: db, Commit: c, Backend: soft, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	block, err := tr31.Wrap(transport, tr31.Header{Version: 'B', Usage: "K0", Algorithm: 'T', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'N'}, kek)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Load(ctx, keystore.Load{Items: []keystore.Item{{Role: "kek0", Block: block}}, KEK: 0, Source: "tr31"}); err != nil {
		t.Fatal(err)
	}
	return ks
}

func kcvOf(ks *keystore.Store) map[keystore.Role]string {
	out := map[keystore.Role]string{}
	for _, e := range ks.Entries() {
		out[e.Role] = e.KCV
	}
	return out
}

func TestSignInLayouts(t *testing.T) {
	for _, tc := range []struct {
		name string
		f62  func(t *testing.T) []byte
		want map[keystore.Role][]byte
	}{
		{"24 bytes, single length", func(t *testing.T) []byte { return field62(t, pik[:8], mak8) }, map[keystore.Role][]byte{"pik": pik[:8], "mak": mak8}},
		{"40 bytes, double length, single-DES MAK", func(t *testing.T) []byte { return field62(t, pik, mak8) }, map[keystore.Role][]byte{"pik": pik, "mak": mak8}},
		{"60 bytes, with the data key", func(t *testing.T) []byte { return field62(t, pik, tdk, tdk) }, map[keystore.Role][]byte{"pik": pik, "mak": tdk, "tdk": tdk}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks := newSoftStore(t)
			items, err := keystore.SignInKeys(tc.f62(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ks.Load(context.Background(), keystore.Load{Items: items, KEK: -1, Source: "signin"}); err != nil {
				t.Fatal(err)
			}
			got := kcvOf(ks)
			for role, key := range tc.want {
				if want := strings.ToUpper(hex.EncodeToString(cv(t, key, 3))); got[role] != want {
					t.Errorf("%s: KCV %s, want %s", role, got[role], want)
				}
			}
		})
	}
}

func TestSignInRefusals(t *testing.T) {
	ks := newSoftStore(t)
	ctx := context.Background()
	good := field62(t, pik, mak8)
	items, _ := keystore.SignInKeys(good)
	if _, err := ks.Load(ctx, keystore.Load{Items: items, KEK: -1, Source: "signin"}); err != nil {
		t.Fatal(err)
	}
	before := kcvOf(ks)

	badCheck := bytes.Clone(good)
	badCheck[len(badCheck)-1] ^= 0xFF // the MAK's check value
	otherKEK := bytes.Clone(good)
	copy(otherKEK, ecb(t, tdk, pik)) // PIK under another master key: its check value fails
	for name, f62 := range map[string][]byte{"wrong check value": badCheck, "wrong KEK": otherKEK} {
		items, err := keystore.SignInKeys(f62)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ks.Load(ctx, keystore.Load{Items: items, KEK: -1, Source: "signin"})
		if !errors.Is(err, keystore.ErrKCVMismatch) {
			t.Errorf("%s: %v", name, err)
		}
		if got := kcvOf(ks); !equal(got, before) {
			t.Errorf("%s: keys changed to %v", name, got)
		}
	}
	for _, n := range []int{0, 12, 23, 25, 41, 59, 61, 200} {
		if _, err := keystore.SignInKeys(make([]byte, n)); !errors.Is(err, keystore.ErrBadLength) {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	if _, err := keystore.SignInKeys(make([]byte, 40)); !errors.Is(err, keystore.ErrSignInKeys) {
		t.Errorf("all-zero keys: %v", err)
	}
}

func equal(a, b map[keystore.Role]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func FuzzSignInKeys(f *testing.F) {
	for _, n := range []int{24, 40, 60, 0, 23} {
		f.Add(bytes.Repeat([]byte{0x5A}, n))
	}
	f.Add(append(bytes.Repeat([]byte{1}, 20), make([]byte, 20)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		items, err := keystore.SignInKeys(b)
		if err != nil {
			if !errors.Is(err, keystore.ErrBadLength) {
				t.Fatalf("error %v is not typed", err)
			}
			return
		}
		total := 0
		for _, it := range items {
			if len(it.Check) != 4 || (len(it.Encrypted) != 8 && len(it.Encrypted) != 16) {
				t.Fatalf("item %s: %d-byte key, %d-byte check", it.Role, len(it.Encrypted), len(it.Check))
			}
			total += 4 + len(it.Encrypted)
		}
		if total > len(b) {
			t.Fatalf("items of %d bytes from %d", total, len(b))
		}
	})
}
