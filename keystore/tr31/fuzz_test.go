package tr31

import (
	"bytes"
	"errors"
	"testing"
)

// typed reports whether err is one of the package's sentinel errors, which
// is all a caller can branch on.
func typed(err error) bool {
	for _, e := range []error{ErrMalformed, ErrUnsupportedVersion, ErrMAC, ErrKBPK, ErrKeyLength} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Seeds: the committed corpus under testdata/fuzz/FuzzParse (valid and broken
// blocks) plus the published vectors.
func FuzzParse(f *testing.F) {
	for _, v := range vectors {
		f.Add(v.block)
	}
	f.Fuzz(func(t *testing.T, block string) {
		h, lay, err := parse(block)
		if err != nil {
			if !typed(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if h2, err := Parse(block); err != nil || !equalHeader(h, h2) {
			t.Fatalf("Parse disagrees with parse: %v", err)
		}
		// A header we accepted, written out again, must read back the
		// same. formatHeader writes lengths in their short form, so a
		// block that used a needless extended length can come out
		// shorter: then it either no longer aligns under the block's own
		// PB (an error) or gains a PB of its own, which is all that may
		// differ.
		p, _ := versionParams(h.Version)
		hdr, err := formatHeader(h, p, (lay.macStart-lay.hdrEnd)/2)
		if err != nil {
			return
		}
		again, err := Parse(hdr + block[lay.hdrEnd:])
		if err == nil && len(again.Optional) == len(h.Optional)+1 && again.Optional[len(h.Optional)].ID == "PB" {
			again.Optional = again.Optional[:len(h.Optional)]
		}
		if err != nil || !equalHeader(h, again) {
			t.Fatalf("re-formatted header %q: %+v, %v; want %+v", hdr, again, err, h)
		}
	})
}

// FuzzUnwrap runs every input under two fixed KBPKs: the TR-31:2018 A.7.2.2
// TDES key and the A.7.4 AES-256 key, so the valid seeds exercise the whole
// path and their mutations the MAC and key data checks.
func FuzzUnwrap(f *testing.F) {
	kbpks := [][]byte{unhex(f, kbpkB), unhex(f, kbpkD)}
	for _, v := range vectors {
		f.Add(v.block)
	}
	f.Fuzz(func(t *testing.T, block string) {
		for _, kbpk := range kbpks {
			h, key, err := Unwrap(kbpk, block)
			if err != nil {
				if !typed(err) {
					t.Fatalf("untyped error %v", err)
				}
				if key != nil {
					t.Fatal("key returned with an error")
				}
				continue
			}
			if ph, err := Parse(block); err != nil || !equalHeader(h, ph) {
				t.Fatalf("Unwrap accepted a block Parse rejects or reads differently: %v", err)
			}
			if err := checkKeyLength(h.Algorithm, len(key)); err != nil {
				t.Fatalf("Unwrap returned a key of a disallowed length: %v", err)
			}
			block2, err := Wrap(kbpk, h, key)
			if err != nil {
				if errors.Is(err, ErrMalformed) {
					continue // e.g. a header that only aligned with its original PB
				}
				t.Fatalf("re-Wrap: %v", err)
			}
			h2, key2, err := Unwrap(kbpk, block2)
			if err != nil || !bytes.Equal(key, key2) || !equalHeader(h, h2) {
				t.Fatalf("re-wrapped block does not unwrap to the same key and header: %v", err)
			}
		}
	})
}

func benchmarkUnwrap(b *testing.B, kbpkHex, block string) {
	kbpk := unhex(b, kbpkHex)
	for b.Loop() {
		if _, _, err := Unwrap(kbpk, block); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnwrapB(b *testing.B) { benchmarkUnwrap(b, kbpkB, blockB) }
func BenchmarkUnwrapD(b *testing.B) { benchmarkUnwrap(b, kbpkD, blockD) }

func BenchmarkParse(b *testing.B) {
	for b.Loop() {
		if _, err := Parse(blockD); err != nil {
			b.Fatal(err)
		}
	}
}
