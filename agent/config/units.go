package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in TOML as a Go duration string ("300s", "5m", "1h30m").
// A bare integer is refused: "300" could mean seconds or milliseconds, and guessing wrong
// makes a keepalive a thousand times too long.
type Duration time.Duration

// D is the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration string, so an encoded config reads back the same.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return &ValueError{Value: string(b), Want: `a duration such as "300s", "5m" or "1h"`}
	}
	*d = Duration(v)
	return nil
}

// UnmarshalTOML lets the TOML decoder give a clear error for a number instead of a string.
func (d *Duration) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return &ValueError{Value: fmt.Sprint(v), Want: `a duration string such as "300s" or "5m"`}
	}
	return d.UnmarshalText([]byte(s))
}

// ByteSize is a size in bytes, written as an integer or a string with a unit: "16MiB",
// "512KiB", "1GiB" (powers of 1024), "10MB" (powers of 1000), "4096" or "4096B".
type ByteSize int64

// The binary units, largest first, for String.
var byteUnits = []struct {
	name string
	n    int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

// String writes the size with the largest unit that divides it exactly.
func (b ByteSize) String() string {
	if b == 0 {
		return "0B"
	}
	for _, u := range byteUnits {
		if int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// MarshalText writes String.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText parses a size string.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// UnmarshalTOML accepts a TOML integer (bytes) or a size string.
func (b *ByteSize) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return &ValueError{Value: strconv.FormatInt(x, 10), Want: "a size that is not negative"}
		}
		*b = ByteSize(x)
		return nil
	case string:
		return b.UnmarshalText([]byte(x))
	default:
		return &ValueError{Value: fmt.Sprint(v), Want: `a size such as "16MiB" or a number of bytes`}
	}
}

// ParseByteSize parses "16MiB", "512 KiB", "10MB", "4096B" or "4096". Units are
// case-insensitive; fractions and negative sizes are refused.
func ParseByteSize(s string) (ByteSize, error) {
	bad := &ValueError{Value: s, Want: `a size such as "16MiB", "512KiB" or a number of bytes`}
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 || i > 19 {
		return 0, bad
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, bad
	}
	unit := strings.TrimSpace(t[i:])
	mult := int64(1)
	if unit != "" {
		found := false
		for _, u := range byteUnits {
			if strings.EqualFold(unit, u.name) {
				mult, found = u.n, true
				break
			}
		}
		if !found {
			return 0, bad
		}
	}
	if n > math.MaxInt64/mult {
		return 0, &ValueError{Value: s, Want: "a size below 8EiB"}
	}
	return ByteSize(n * mult), nil
}

// ValueError is a value of the wrong form.
type ValueError struct {
	Value string
	Want  string
}

func (e *ValueError) Error() string { return fmt.Sprintf("invalid value %q: want %s", e.Value, e.Want) }
