package termconfig

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
)

// example returns the configured-terminal document of testdata/example.json (also shown in
// docs/terminal-config.md).
func example(t testing.TB) *Document {
	t.Helper()
	data, err := os.ReadFile("testdata/example.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// docFor derives a valid document from its version alone, with content (and size) varying by
// version, so a test can recompute exactly what any version must contain.
func docFor(t testing.TB, v uint64) *Document {
	t.Helper()
	d := example(t)
	d.Version = v
	d.AuthHost.MerchantName = fmt.Sprintf("Shop %d", v)
	d.PaymentProfile.MaxAmount = 1_000_000 + v
	d.HostParameters.MaxBatchSize = MinBatchSize + uint32(v%100)
	d.HostParameters.MaxLogCount = 1000 + uint32(v)
	for i := range v % 40 {
		low := fmt.Sprintf("%06d", 900000+i*10)
		d.BINRanges = append(d.BINRanges, BINRange{Low: low, High: low[:5] + "9", Scheme: SchemeLocal, Region: RegionDomestic})
	}
	return d
}

func mustEncode(t testing.TB, d *Document) []byte {
	t.Helper()
	b, err := Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sameDoc(t testing.TB, got, want *Document) {
	t.Helper()
	if g, w := mustEncode(t, got), mustEncode(t, want); !bytes.Equal(g, w) {
		t.Fatalf("document differs: got version %d (%s), want version %d (%s)",
			got.Version, Digest(g), want.Version, Digest(w))
	}
}

// violationPaths returns the sorted paths of a *ValidationError, failing on any other error.
func violationPaths(t testing.TB, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %T: %v", err, err)
	}
	var paths []string
	for _, v := range ve.Violations {
		if v.Message == "" {
			t.Errorf("violation at %s has no message", v.Path)
		}
		paths = append(paths, v.Path)
	}
	slices.Sort(paths)
	return paths
}
