package manifest

import (
	"errors"
	"strings"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	// Each list is in ascending order; equal neighbours are marked by the pairs below.
	ascending := []string{
		"0", "0.0.1", "0.9", "0.10", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
		"1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.4.0-pre.3", "1.4.0-rc.1", "1.4.0",
		"1.4.0.1", "1.10", "2", "2026.11.1", "99999999999999999999", "100000000000000000000.0.1",
	}
	for i := range ascending {
		for j := range ascending {
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			got, err := CompareVersions(ascending[i], ascending[j])
			if err != nil || got != want {
				t.Errorf("CompareVersions(%q, %q) = %d, %v; want %d", ascending[i], ascending[j], got, err, want)
			}
		}
	}
	for _, eq := range [][2]string{{"1.4", "1.4.0"}, {"1", "1.0.0.0"}, {"1.4-rc.1", "1.4.0-rc.1"}, {"0", "0.0"}} {
		if got, err := CompareVersions(eq[0], eq[1]); err != nil || got != 0 {
			t.Errorf("CompareVersions(%q, %q) = %d, %v; want 0", eq[0], eq[1], got, err)
		}
	}
	for _, bad := range []string{"", "v1.0", "1.", ".1", "1..2", "01", "1.02", "1.0-", "1.0-rc..1", "1.0-rc.01", "1.0-rc_1",
		"1.0+build", "1 .0", "dev", "1.0-ü", strings.Repeat("1.", 40) + "1"} {
		if _, err := CompareVersions(bad, "1.0"); !errors.Is(err, ErrBadVersion) {
			t.Errorf("CompareVersions(%q, 1.0): %v, want ErrBadVersion", bad, err)
		}
		if _, err := CompareVersions("1.0", bad); !errors.Is(err, ErrBadVersion) {
			t.Errorf("CompareVersions(1.0, %q): %v, want ErrBadVersion", bad, err)
		}
	}
}
