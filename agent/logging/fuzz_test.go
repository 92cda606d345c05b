package logging

import (
	"testing"
	"unicode/utf8"
)

// Log files are read back from disk, where anything may have been left.
func FuzzLineTime(f *testing.F) {
	f.Add([]byte(`{"time":"2026-03-01T12:00:00.123456789Z","level":"INFO","msg":"m"}`))
	f.Add([]byte(`{"msg":"x","time":"2026-03-01T12:05:00+03:00"}`))
	f.Add([]byte(`{"time":"`))
	f.Add([]byte(`{"time":"2026-13-45T99:99:99Z"}`))
	f.Add([]byte("not json"))
	f.Fuzz(func(t *testing.T, line []byte) {
		ts, ok := LineTime(line)
		if ok && ts.IsZero() {
			t.Fatalf("LineTime(%q) ok with zero time", line)
		}
	})
}

// Whatever the input, masking keeps the shape of the string and leaves no card number.
func FuzzMaskPANs(f *testing.F) {
	f.Add("6222021234561236")
	f.Add("pan=4111111111119;track=6222021234561236=2512101")
	f.Add("12345678901234567890")
	f.Add("")
	f.Add("6222021234567890128D")
	f.Fuzz(func(t *testing.T, s string) {
		m := MaskPANs(s)
		if len(m) != len(s) {
			t.Fatalf("length changed: %q -> %q", s, m)
		}
		for i := range len(s) {
			if m[i] != s[i] && (m[i] != '*' || !isDigit(s[i])) {
				t.Fatalf("byte %d changed from %q to %q", i, s[i], m[i])
			}
		}
		if MaskPANs(m) != m {
			t.Fatalf("masked output %q still has a card number", m)
		}
		if utf8.ValidString(s) && !utf8.ValidString(m) {
			t.Fatalf("masking broke UTF-8: %q", m)
		}
	})
}
