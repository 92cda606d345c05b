package manifest

import (
	"errors"
	"fmt"
	"strings"
)

// MaxVersionLen bounds a version string.
const MaxVersionLen = 64

// ErrBadVersion is wrapped by every error of CompareVersions and ValidVersion.
var ErrBadVersion = errors.New("not a version (want dotted numbers like 1.4.0, optionally -rc.1)")

// version is a parsed version: numeric parts without leading zeros (so they compare by length,
// then bytes, with no overflow), and the pre-release identifiers after "-", if any.
type version struct {
	core []string
	pre  []string // nil: a release
}

// ValidVersion reports whether v is a version: dotted decimal numbers without leading zeros
// ("1", "1.4.0", "2026.11.1"), optionally followed by "-" and dot-separated pre-release
// identifiers of [0-9A-Za-z-] ("1.4.0-rc.1", "2.0-pre.3"), at most MaxVersionLen bytes.
func ValidVersion(v string) error {
	_, err := parseVersion(v)
	return err
}

func parseVersion(v string) (version, error) {
	if v == "" || len(v) > MaxVersionLen {
		return version{}, fmt.Errorf("%w: %d bytes, want 1..%d", ErrBadVersion, len(v), MaxVersionLen)
	}
	coreStr, preStr, hasPre := strings.Cut(v, "-")
	var pv version
	for part := range strings.SplitSeq(coreStr, ".") {
		if !isNumber(part) {
			return version{}, fmt.Errorf("%w: %q", ErrBadVersion, v)
		}
		pv.core = append(pv.core, part)
	}
	if hasPre {
		pv.pre = []string{}
		for id := range strings.SplitSeq(preStr, ".") {
			if !isIdent(id) {
				return version{}, fmt.Errorf("%w: %q", ErrBadVersion, v)
			}
			pv.pre = append(pv.pre, id)
		}
	}
	return pv, nil
}

// isNumber: "0" or digits without a leading zero. Leading zeros are refused so that two
// spellings of one number cannot exist.
func isNumber(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	if isDigits(s) {
		return isNumber(s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return false
		}
	}
	return true
}

// compareNumbers compares two decimal numbers without leading zeros.
func compareNumbers(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// CompareVersions returns -1, 0 or +1 as a is older than, the same as, or newer than b.
// Missing numeric parts count as 0 ("1.4" == "1.4.0"); a pre-release sorts before its release
// ("1.4.0-rc.1" < "1.4.0"); pre-release identifiers compare as in semver (numbers
// numerically and before words, words by bytes, a shorter list first when it is a prefix).
// Either version not valid (ValidVersion) is an error wrapping ErrBadVersion.
func CompareVersions(a, b string) (int, error) {
	va, err := parseVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := parseVersion(b)
	if err != nil {
		return 0, err
	}
	return va.compare(vb), nil
}

func (a version) compare(b version) int {
	for i := range max(len(a.core), len(b.core)) {
		x, y := "0", "0"
		if i < len(a.core) {
			x = a.core[i]
		}
		if i < len(b.core) {
			y = b.core[i]
		}
		if c := compareNumbers(x, y); c != 0 {
			return c
		}
	}
	switch {
	case a.pre == nil && b.pre == nil:
		return 0
	case a.pre == nil:
		return 1
	case b.pre == nil:
		return -1
	}
	for i := range min(len(a.pre), len(b.pre)) {
		if c := compareIdents(a.pre[i], b.pre[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(a.pre) < len(b.pre):
		return -1
	case len(a.pre) > len(b.pre):
		return 1
	}
	return 0
}

func compareIdents(x, y string) int {
	xn, yn := isDigits(x), isDigits(y)
	switch {
	case xn && yn:
		return compareNumbers(x, y)
	case xn:
		return -1
	case yn:
		return 1
	}
	return strings.Compare(x, y)
}
